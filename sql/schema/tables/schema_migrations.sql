-- The migrations applied (sms-dispatcher migrate); the daemon refuses a schema older than it needs.
CREATE TABLE sms.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY sms.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

GRANT SELECT ON TABLE sms.schema_migrations TO sms_dispatcher;
