-- Full-text search over message text, conversation titles and image prompts (FTS5, no stemming,
-- diacritics folded). Each index keeps its own copy of the text with the owning ids, kept in step
-- by triggers; ids rather than rowids, since VACUUM may renumber implicit rowids.

CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, message_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts (content, message_id) SELECT content, id FROM messages;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (content, message_id) VALUES (new.content, new.id);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE message_id = old.id;
END;

CREATE VIRTUAL TABLE conversations_fts USING fts5(
    title, conversation_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO conversations_fts (title, conversation_id) SELECT title, id FROM conversations;
CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO conversations_fts (title, conversation_id) VALUES (new.title, new.id);
END;
CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
    UPDATE conversations_fts SET title = new.title WHERE conversation_id = old.id;
END;
CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
    DELETE FROM conversations_fts WHERE conversation_id = old.id;
END;

CREATE VIRTUAL TABLE images_fts USING fts5(
    prompt, image_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO images_fts (prompt, image_id) SELECT prompt, id FROM images;
CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
    INSERT INTO images_fts (prompt, image_id) VALUES (new.prompt, new.id);
END;
CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
    DELETE FROM images_fts WHERE image_id = old.id;
END;
