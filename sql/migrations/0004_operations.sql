-- sms-dispatcher schema, version 4: retention.

-- Retention deletes finished jobs oldest first; sms.attempts rows go with them (ON DELETE CASCADE).
CREATE INDEX jobs_finished_idx ON sms.jobs (finished_at) WHERE finished_at IS NOT NULL;
