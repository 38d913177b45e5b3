-- The revocation feed (see auth-service/src/revocation/log.rs): one row per
-- fact, with a gapless cursor taken from revocation_head under its row lock,
-- so facts commit in cursor order and a reader that saw cursor N has seen
-- every fact before it. Facts older than REVOCATION_RETENTION are pruned:
-- every token issued before them has expired.
CREATE TABLE revocations (
    seq              BIGINT PRIMARY KEY,
    occurred_at      TIMESTAMPTZ NOT NULL,
    kind             TEXT NOT NULL,
    principal_id     UUID NOT NULL,
    token_generation BIGINT NOT NULL,
    disabled         BOOLEAN NOT NULL,
    session_id       UUID
);
CREATE INDEX revocations_principal_idx ON revocations (principal_id, seq);

CREATE TABLE revocation_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    seq    BIGINT NOT NULL,
    -- The oldest cursor still kept (seq + 1 when none is).
    oldest BIGINT NOT NULL
);
INSERT INTO revocation_head (id, seq, oldest) VALUES (1, 0, 1);

-- What a person sees of their sessions.
ALTER TABLE refresh_families ADD COLUMN last_used_at TIMESTAMPTZ;
ALTER TABLE refresh_families ADD COLUMN client_addr TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_families ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';

CREATE TABLE service_accounts (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL,
    roles            JSONB NOT NULL,
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    token_generation BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT service_accounts_name_key UNIQUE (name)
);

-- Stored as SHA-256: a secret is 256 random bits, so a fast hash is enough.
CREATE TABLE service_account_secrets (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES service_accounts (id),
    secret_hash BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    CONSTRAINT service_account_secrets_hash_key UNIQUE (secret_hash)
);
CREATE INDEX service_account_secrets_account_idx ON service_account_secrets (account_id);
