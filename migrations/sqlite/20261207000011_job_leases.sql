-- Jobs are claimed through their rows, so several processes can share one queue: the process
-- drawing a job and until when its claim holds (renewed while it draws; once past, any process
-- may claim the job again), and a cancel asked on any process, honoured by the one drawing.
ALTER TABLE image_jobs ADD COLUMN worker TEXT;
ALTER TABLE image_jobs ADD COLUMN lease_until BIGINT;
ALTER TABLE image_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- Running-or-queued jobs per account count against its limits on every admission.
CREATE INDEX image_jobs_account_unfinished ON image_jobs (account_id, status);
