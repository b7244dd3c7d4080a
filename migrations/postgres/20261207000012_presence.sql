-- Processes sharing the database say they are alive (a heartbeat), and each chat reply being
-- written names its process, so a reply whose process died is marked interrupted by another, and
-- its owner's replies being written on every process count against their limits.
CREATE TABLE processes (
    name        TEXT PRIMARY KEY NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);
CREATE TABLE replies_in_flight (
    -- the id the reply will be stored under
    message_id       TEXT PRIMARY KEY NOT NULL,
    conversation_id  TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    process          TEXT NOT NULL,
    started_at       BIGINT NOT NULL
);
CREATE INDEX replies_in_flight_account ON replies_in_flight (account_id);
