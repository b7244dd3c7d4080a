-- Full-text search over message text, conversation titles and image prompts: generated tsvector
-- columns with GIN indexes, configuration 'simple' (no stemming), like the SQLite side.

ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);

ALTER TABLE conversations ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED;
CREATE INDEX conversations_search ON conversations USING GIN (search);

ALTER TABLE images ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', prompt)) STORED;
CREATE INDEX images_search ON images USING GIN (search);
