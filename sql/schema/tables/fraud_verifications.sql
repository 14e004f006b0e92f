-- Codes reported entered per prefix and country and minute: the anomaly check's verified share.
-- UNLOGGED, as the counters.
CREATE UNLOGGED TABLE sms.fraud_verifications (
    scope text NOT NULL,
    key text NOT NULL,
    minute timestamp with time zone NOT NULL,
    verified integer DEFAULT 0 NOT NULL,
    CONSTRAINT fraud_verifications_scope_check CHECK ((scope = ANY (ARRAY['prefix'::text, 'country'::text])))
);

ALTER TABLE ONLY sms.fraud_verifications
    ADD CONSTRAINT fraud_verifications_pkey PRIMARY KEY (scope, key, minute);

CREATE INDEX fraud_verifications_minute_idx ON sms.fraud_verifications USING brin (minute) WITH (autosummarize='on');

GRANT SELECT ON TABLE sms.fraud_verifications TO sms_monitor;
GRANT SELECT,DELETE ON TABLE sms.fraud_verifications TO sms_dispatcher;
