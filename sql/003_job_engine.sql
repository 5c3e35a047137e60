-- 003: what the job engine needs to keep its promises.
--
-- run_seconds, run_started_at: a job's running time over all its runs. run_started_at is set
-- when a run starts; when the run ends (or is found dead), the time since is added to
-- run_seconds, so a resumed job's duration and rate leave out the time it was stopped.
ALTER TABLE heimdall.generation_jobs
    ADD COLUMN run_seconds    double precision NOT NULL DEFAULT 0 CHECK (run_seconds >= 0),
    ADD COLUMN run_started_at timestamptz;

-- The first 8 bytes of a dataset id prefix every recording id of its samples. Two datasets
-- created in the same millisecond by two processes could share them (UUIDv7 keeps 12 random
-- bits there); this unique key makes the second creation retry with a new id at once, instead
-- of its samples' COPY failing later.
ALTER TABLE heimdall.synthetic_datasets
    ADD COLUMN recording_prefix bigint
        GENERATED ALWAYS AS (('x' || left(replace(id::text, '-', ''), 16))::bit(64)::bigint) STORED;
ALTER TABLE heimdall.synthetic_datasets
    ADD CONSTRAINT synthetic_datasets_recording_prefix_key UNIQUE (recording_prefix);
