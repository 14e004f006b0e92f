-- Anomaly blocks made by sms.fraud_evaluate (and their end, by an operator or by time).
CREATE TABLE sms.fraud_blocks (
    scope text NOT NULL,
    key text NOT NULL,
    since timestamp with time zone NOT NULL,
    until timestamp with time zone NOT NULL,
    reason text NOT NULL,
    cleared_by text,
    cleared_at timestamp with time zone,
    CONSTRAINT fraud_blocks_scope_check CHECK ((scope = ANY (ARRAY['prefix'::text, 'country'::text])))
);

COMMENT ON TABLE sms.fraud_blocks IS 'Fraud guard anomaly blocks; in force while until > now(). sms-dispatcher fraud list|unblock.';

ALTER TABLE ONLY sms.fraud_blocks
    ADD CONSTRAINT fraud_blocks_pkey PRIMARY KEY (scope, key);

GRANT SELECT ON TABLE sms.fraud_blocks TO sms_monitor;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.fraud_blocks TO sms_dispatcher;
