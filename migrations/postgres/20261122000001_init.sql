-- Conversations, their messages, and generated images. Times are Unix milliseconds (UTC), ids are
-- server-made UUIDs as text: the same shapes as the Postgres schema, so queries are shared.

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    title       TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at DESC);

CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    conversation_id    TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq                INTEGER NOT NULL,
    role               TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content            TEXT NOT NULL,
    reasoning          TEXT,
    model              TEXT,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    ttft_ms            BIGINT,
    total_ms           BIGINT,
    created_at         BIGINT NOT NULL,
    UNIQUE (conversation_id, seq)
);

CREATE TABLE images (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    conversation_id  TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    message_id       TEXT REFERENCES messages (id) ON DELETE SET NULL,
    prompt           TEXT NOT NULL,
    negative_prompt  TEXT NOT NULL DEFAULT '',
    steps            INTEGER NOT NULL,
    guidance_scale   DOUBLE PRECISION NOT NULL,
    seed             BIGINT NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    scheduler        TEXT NOT NULL,
    model            TEXT NOT NULL,
    file_name        TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX images_by_user ON images (user_id, created_at DESC);
