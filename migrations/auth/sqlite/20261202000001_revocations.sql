-- The revocation feed (see auth-service/src/revocation/log.rs): one row per
-- fact, with a gapless cursor taken from revocation_head under its row lock,
-- so facts commit in cursor order and a reader that saw cursor N has seen
-- every fact before it. Facts older than REVOCATION_RETENTION are pruned:
-- every token issued before them has expired.
CREATE TABLE revocations (
    seq              INTEGER PRIMARY KEY NOT NULL,
    occurred_at      INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    principal_id     BLOB NOT NULL,
    token_generation INTEGER NOT NULL,
    disabled         INTEGER NOT NULL,
    session_id       BLOB
);
CREATE INDEX revocations_principal_idx ON revocations (principal_id, seq);

CREATE TABLE revocation_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    seq    INTEGER NOT NULL,
    -- The oldest cursor still kept (seq + 1 when none is).
    oldest INTEGER NOT NULL
);
INSERT INTO revocation_head (id, seq, oldest) VALUES (1, 0, 1);

-- What a person sees of their sessions.
ALTER TABLE refresh_families ADD COLUMN last_used_at INTEGER;
ALTER TABLE refresh_families ADD COLUMN client_addr TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_families ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';

CREATE TABLE service_accounts (
    id               BLOB PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    roles            TEXT NOT NULL,
    disabled         INTEGER NOT NULL DEFAULT 0,
    token_generation INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CONSTRAINT service_accounts_name_key UNIQUE (name)
);

-- Stored as SHA-256: a secret is 256 random bits, so a fast hash is enough.
CREATE TABLE service_account_secrets (
    id          BLOB PRIMARY KEY NOT NULL,
    account_id  BLOB NOT NULL REFERENCES service_accounts (id),
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    CONSTRAINT service_account_secrets_hash_key UNIQUE (secret_hash)
);
CREATE INDEX service_account_secrets_account_idx ON service_account_secrets (account_id);
