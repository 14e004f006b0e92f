-- The fraud guard's per-minute counters (client IP, user, prefix, country). UNLOGGED: they are
-- rewritten on every first attempt and worth an hour at most; a crash empties them, which only lets
-- that hour's traffic through again (docs/decisions: why the fraud counters are UNLOGGED).
CREATE UNLOGGED TABLE sms.fraud_counts (
    scope text NOT NULL,
    key text NOT NULL,
    minute timestamp with time zone NOT NULL,
    requests integer DEFAULT 0 NOT NULL,
    sends integer DEFAULT 0 NOT NULL,
    limited integer DEFAULT 0 NOT NULL
)
WITH (fillfactor='80');

ALTER TABLE ONLY sms.fraud_counts
    ADD CONSTRAINT fraud_counts_pkey PRIMARY KEY (scope, key, minute);

CREATE INDEX fraud_counts_minute_idx ON sms.fraud_counts USING brin (minute) WITH (pages_per_range='16', autosummarize='on');

GRANT SELECT ON TABLE sms.fraud_counts TO sms_monitor;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.fraud_counts TO sms_dispatcher;
