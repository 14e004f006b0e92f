-- Pauses (sms-dispatcher pause/resume, through sms.pause and sms.resume).
CREATE TABLE sms.controls (
    channel text NOT NULL,
    paused_by text NOT NULL,
    reason text,
    paused_since timestamp with time zone DEFAULT now() NOT NULL,
    paused_until timestamp with time zone,
    CONSTRAINT controls_channel_check CHECK (((channel = '*'::text) OR (channel = ANY (ARRAY['CHANNEL_LOGIN'::text, 'CHANNEL_REGISTER'::text, 'CHANNEL_RESET_PASSWORD'::text, 'CHANNEL_BIND_PHONE'::text, 'CHANNEL_UNBIND_PHONE'::text, 'CHANNEL_BIND_MFA'::text, 'CHANNEL_VERIFY_MFA'::text, 'CHANNEL_UNBIND_MFA'::text, 'CHANNEL_COMPLETE_PHONE'::text, 'CHANNEL_IDENTITY_VERIFICATION'::text, 'CHANNEL_DELETE_ACCOUNT'::text]))))
);

COMMENT ON TABLE sms.controls IS 'Pauses set by `sms-dispatcher pause` (sms.pause); channel ''*'' means every channel.';

ALTER TABLE ONLY sms.controls
    ADD CONSTRAINT controls_pkey PRIMARY KEY (channel);

GRANT SELECT ON TABLE sms.controls TO sms_monitor;
GRANT SELECT ON TABLE sms.controls TO sms_dispatcher;
