-- The fraud guard's allow list: prefixes it never limits nor blocks (sms.fraud_allow).
CREATE TABLE sms.fraud_allowed (
    prefix text NOT NULL,
    note text,
    added_by text DEFAULT SESSION_USER NOT NULL,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT fraud_allowed_prefix_check CHECK ((prefix ~ '^\+[1-9][0-9]{0,14}$'::text))
);

ALTER TABLE ONLY sms.fraud_allowed
    ADD CONSTRAINT fraud_allowed_pkey PRIMARY KEY (prefix);

GRANT SELECT ON TABLE sms.fraud_allowed TO sms_monitor;
GRANT SELECT ON TABLE sms.fraud_allowed TO sms_dispatcher;
