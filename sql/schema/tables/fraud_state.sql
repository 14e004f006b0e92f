-- The fraud evaluator's one row: how far it has folded, when it last ran and pruned. Its row lock
-- makes one evaluator of the cluster run at a time (SKIP LOCKED).
CREATE TABLE sms.fraud_state (
    one boolean DEFAULT true NOT NULL,
    folded_until timestamp with time zone,
    evaluated_at timestamp with time zone,
    pruned_at timestamp with time zone,
    CONSTRAINT fraud_state_one_check CHECK (one)
);

ALTER TABLE ONLY sms.fraud_state
    ADD CONSTRAINT fraud_state_pkey PRIMARY KEY (one);

GRANT SELECT,UPDATE ON TABLE sms.fraud_state TO sms_dispatcher;

INSERT INTO sms.fraud_state DEFAULT VALUES;
