-- Users known to enter their codes (sms.mark_verified), spared the per-user limit for
-- fraud.trust_verified_days.
CREATE TABLE sms.fraud_trusted (
    user_ref text NOT NULL,
    verified_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY sms.fraud_trusted
    ADD CONSTRAINT fraud_trusted_pkey PRIMARY KEY (user_ref);

CREATE INDEX fraud_trusted_verified_idx ON sms.fraud_trusted USING btree (verified_at);

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.fraud_trusted TO sms_dispatcher;
