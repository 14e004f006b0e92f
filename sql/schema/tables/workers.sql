-- Live daemons: their heartbeat, in-flight calls and counters (sms-dispatcher status, sms.queue_stats).
CREATE TABLE sms.workers (
    id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    in_flight integer DEFAULT 0 NOT NULL,
    claimed bigint DEFAULT 0 NOT NULL,
    sent bigint DEFAULT 0 NOT NULL,
    failed bigint DEFAULT 0 NOT NULL,
    retried bigint DEFAULT 0 NOT NULL,
    rejected bigint DEFAULT 0 NOT NULL,
    expired bigint DEFAULT 0 NOT NULL,
    stopped_at timestamp with time zone,
    deferred bigint DEFAULT 0 NOT NULL,
    superseded bigint DEFAULT 0 NOT NULL,
    instance text DEFAULT ''::text NOT NULL,
    unwritten integer DEFAULT 0 NOT NULL,
    oldest_unwritten_s double precision
);

ALTER TABLE ONLY sms.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id, instance);

GRANT SELECT ON TABLE sms.workers TO sms_monitor;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.workers TO sms_dispatcher;
