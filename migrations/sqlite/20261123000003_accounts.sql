-- Accounts, API keys and daily usage. Data made before accounts existed (or with
-- AUTH_REQUIRED=false and no credentials) belongs to the pseudo-account 'local'.

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at     BIGINT NOT NULL,
    disabled_at    BIGINT
);

-- Keys are stored only as SHA-256 hashes; `prefix` (the first characters) lets owners tell them apart.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);

ALTER TABLE conversations ADD COLUMN account_id TEXT NOT NULL DEFAULT 'local';
DROP INDEX conversations_by_user;
CREATE INDEX conversations_by_owner ON conversations (account_id, user_id, updated_at DESC);

ALTER TABLE images ADD COLUMN account_id TEXT NOT NULL DEFAULT 'local';
DROP INDEX images_by_user;
CREATE INDEX images_by_owner ON images (account_id, created_at DESC);

-- What each end user of each account generated per UTC day (days since 1970-01-01), for quotas.
CREATE TABLE usage_daily (
    account_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    day         BIGINT NOT NULL,
    tokens      BIGINT NOT NULL DEFAULT 0,
    images      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, user_id, day)
);
