-- The fraud guard's slow memory: hourly sends and verified codes per prefix and country, decayed as
-- sms.fraud_evaluate folds closed minutes in. Logged: a restart must not forget what normal looks like.
CREATE TABLE sms.fraud_baselines (
    scope text NOT NULL,
    key text NOT NULL,
    first_seen timestamp with time zone NOT NULL,
    folded_until timestamp with time zone NOT NULL,
    hourly_sends double precision NOT NULL,
    hourly_verified double precision NOT NULL
);

ALTER TABLE ONLY sms.fraud_baselines
    ADD CONSTRAINT fraud_baselines_pkey PRIMARY KEY (scope, key);

CREATE INDEX fraud_baselines_folded_idx ON sms.fraud_baselines USING btree (folded_until);

GRANT SELECT ON TABLE sms.fraud_baselines TO sms_monitor;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.fraud_baselines TO sms_dispatcher;
