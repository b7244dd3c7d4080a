-- What the service needs to rebuild a conversation's context and report a turn: the image prompt
-- taken out of an assistant reply (fed back so the model sees its own format), and why the reply
-- ended.
ALTER TABLE messages ADD COLUMN image_prompt TEXT;
ALTER TABLE messages ADD COLUMN finish_reason TEXT;
