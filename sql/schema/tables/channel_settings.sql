-- What the daemons publish about each channel (default priority, TTL, attempt cap), so the SQL that
-- runs without them (the insert trigger, the rescue, the paused-job expiry) applies the same rules.
CREATE TABLE sms.channel_settings (
    channel text NOT NULL,
    default_priority smallint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    ttl_seconds double precision,
    max_attempts smallint
);

ALTER TABLE ONLY sms.channel_settings
    ADD CONSTRAINT channel_settings_pkey PRIMARY KEY (channel);

GRANT SELECT,INSERT,UPDATE ON TABLE sms.channel_settings TO sms_dispatcher;
