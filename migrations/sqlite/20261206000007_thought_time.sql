-- How long the model thought before it answered, so a stored reply can say "Thought for N s".
ALTER TABLE messages ADD COLUMN thought_ms BIGINT;
