-- Image jobs as rows, written when a job is accepted and at every change after: what a restarted
-- process needs to draw it again (the recipe and where it came from), and what GET /jobs/{id}
-- answers once the job is no longer in the running process's memory.
CREATE TABLE image_jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    conversation_id  TEXT,
    message_id       TEXT,
    prompt           TEXT NOT NULL,
    negative_prompt  TEXT NOT NULL DEFAULT '',
    steps            INTEGER NOT NULL,
    guidance_scale   DOUBLE PRECISION NOT NULL,
    seed             BIGINT NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    scheduler        TEXT NOT NULL,
    model            TEXT NOT NULL,
    -- queued, running, done, failed, cancelled
    status           TEXT NOT NULL,
    step             INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    -- 1 flagged by the safety checker, 0 not, NULL not checked
    nsfw             INTEGER,
    -- how many times a process started drawing it (more than 1: it was drawn again after a restart)
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX image_jobs_unfinished ON image_jobs (status, created_at);
