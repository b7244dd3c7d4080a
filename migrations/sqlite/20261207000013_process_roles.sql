-- Each process says what it is (all, web, worker) and, for a worker, the URL web processes reach
-- it at, so web processes find the workers alive and route chat turns to them.
ALTER TABLE processes ADD COLUMN role TEXT NOT NULL DEFAULT 'all';
ALTER TABLE processes ADD COLUMN url TEXT;
