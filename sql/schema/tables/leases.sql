-- One row per claim: the lease of every job the claim took, extended by its holder's heartbeat, read
-- by the rescue. lease_token_seq numbers the claims (the fencing token the write-back must match).
CREATE SEQUENCE sms.lease_token_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 100;

CREATE TABLE sms.leases (
    lease_token bigint NOT NULL,
    worker text NOT NULL,
    until timestamp with time zone NOT NULL,
    job_ids bigint[] NOT NULL
);

COMMENT ON TABLE sms.leases IS 'One row per claim (sms.jobs.lease_token): the rescue''s way to running jobs whose lease ran out.';

ALTER TABLE ONLY sms.leases
    ADD CONSTRAINT leases_pkey PRIMARY KEY (lease_token);

CREATE INDEX leases_until_idx ON sms.leases USING btree (until);

GRANT USAGE ON SEQUENCE sms.lease_token_seq TO sms_dispatcher;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.leases TO sms_dispatcher;
GRANT SELECT ON TABLE sms.leases TO sms_monitor;
