-- Token revocation (docs/operations.md, "Tokens"): a password change invalidates every token
-- issued before it (tokens_valid_from, milliseconds since the epoch), and a logout revokes
-- one token by its id until it would have expired anyway.
ALTER TABLE users ADD COLUMN tokens_valid_from BIGINT NOT NULL DEFAULT 0;

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
