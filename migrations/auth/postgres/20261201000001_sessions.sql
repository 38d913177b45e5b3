-- Refresh-token families get a row of their own, so that spending a token
-- and revoking its family serialise on one row (SELECT ... FOR UPDATE), and
-- an epoch: a family minted before the user's last password change, disable
-- or session revocation (users.session_epoch) never refreshes again.

ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

CREATE TABLE refresh_families (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id),
    session_epoch BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX refresh_families_user_idx ON refresh_families (user_id);

-- Existing families: revoked when every token of theirs is.
INSERT INTO refresh_families (id, user_id, session_epoch, created_at, revoked_at)
SELECT family_id, user_id, 0, MIN(created_at),
       CASE WHEN COUNT(revoked_at) = COUNT(*) THEN MAX(revoked_at) END
FROM refresh_tokens GROUP BY family_id, user_id;

ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_family_fkey FOREIGN KEY (family_id) REFERENCES refresh_families (id);

-- Refused attempts while an email is locked are counted here, not audited one
-- by one: one `auth.login_throttled` event per lock window carries the count
-- and the first and last request ids.
ALTER TABLE login_throttle ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN refused_first_request TEXT;
ALTER TABLE login_throttle ADD COLUMN refused_last_request TEXT;
