-- Prompt templates: an account's saved snippets, inserted into the message or prompt box.
CREATE TABLE prompt_templates (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX prompt_templates_by_account ON prompt_templates (account_id, created_at);
