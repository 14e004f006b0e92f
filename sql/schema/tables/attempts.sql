-- One row per call made to GenAuth (or written as unanswered): the job's history, with GenAuth's
-- answer and the daemon that called. Insert-only, so autovacuum runs on inserts; BRIN on job_id
-- (ids grow with time). Retention (sms.purge_finished) removes a purged job's attempts with it.
CREATE TABLE sms.attempts (
    job_id bigint NOT NULL,
    attempt smallint NOT NULL,
    worker text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone NOT NULL,
    outcome text NOT NULL,
    http_status integer,
    status_code integer,
    api_code integer,
    message text,
    request_id text,
    CONSTRAINT attempts_outcome_check CHECK ((outcome = ANY (ARRAY['sent'::text, 'failed'::text, 'retry'::text])))
)
WITH (autovacuum_analyze_scale_factor='0', autovacuum_analyze_threshold='10000', autovacuum_vacuum_insert_scale_factor='0', autovacuum_vacuum_insert_threshold='50000');

ALTER TABLE ONLY sms.attempts REPLICA IDENTITY FULL;

CREATE INDEX attempts_job_brin ON sms.attempts USING brin (job_id) WITH (pages_per_range='8', autosummarize='on');

GRANT SELECT ON TABLE sms.attempts TO sms_monitor;
GRANT SELECT,INSERT ON TABLE sms.attempts TO sms_dispatcher;
