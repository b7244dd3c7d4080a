-- Chat settings kept with a conversation (null: the model's default), used by every later turn
-- that does not set its own: a system prompt added to Duet's, temperature, top-p, reply length.
ALTER TABLE conversations ADD COLUMN system_prompt TEXT;
ALTER TABLE conversations ADD COLUMN temperature REAL;
ALTER TABLE conversations ADD COLUMN top_p REAL;
ALTER TABLE conversations ADD COLUMN max_tokens INTEGER;
