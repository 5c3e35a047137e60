-- 002: what the generation loop needs to be controlled from outside its process.
--
-- cancel_requested: set by a cancel (HTTP or CLI, any process); the loop reads it back in the
-- same UPDATE that commits each batch, so a cancel takes effect within one batch.
-- consecutive_rejections: the stall rule's count of rejected attempts in a row, carried across
-- batches and resumes.
ALTER TABLE heimdall.generation_jobs
    ADD COLUMN cancel_requested       boolean NOT NULL DEFAULT false,
    ADD COLUMN consecutive_rejections bigint  NOT NULL DEFAULT 0,
    ADD COLUMN stop_message           text;

CREATE INDEX generation_jobs_status_idx ON heimdall.generation_jobs (status)
    WHERE status IN ('pending', 'queued', 'running');
