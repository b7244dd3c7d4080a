-- Sessions logged in before this time (Unix ms) are over: a password change ends every other session.
ALTER TABLE accounts ADD COLUMN sessions_since BIGINT NOT NULL DEFAULT 0;
