-- GenAuth's one SMS per phone per channel per minute, kept by the cluster: the window each
-- phone and channel is in, and the claim its call was granted to (a crash marker: while that claim
-- holds the job, its SMS may have gone out).
CREATE TABLE sms.throttle (
    phone_key text NOT NULL,
    channel text NOT NULL,
    window_until timestamp with time zone NOT NULL,
    job_id bigint NOT NULL,
    lease_token bigint
)
WITH (autovacuum_vacuum_scale_factor='0', autovacuum_vacuum_threshold='2000', fillfactor='70');

COMMENT ON COLUMN sms.throttle.lease_token IS 'The claim (sms.jobs.lease_token) whose call this window was granted to: while that job is running under that claim, its SMS may have gone out.';

ALTER TABLE ONLY sms.throttle
    ADD CONSTRAINT throttle_pkey PRIMARY KEY (phone_key, channel);

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.throttle TO sms_dispatcher;
