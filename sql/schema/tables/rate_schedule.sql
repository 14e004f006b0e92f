-- The cluster's GenAuth rate: the next free call slot, handed out by the reservation.
CREATE TABLE sms.rate_schedule (
    singleton boolean DEFAULT true NOT NULL,
    next_slot timestamp with time zone DEFAULT '-infinity'::timestamp with time zone NOT NULL,
    CONSTRAINT rate_schedule_singleton CHECK (singleton)
);

ALTER TABLE ONLY sms.rate_schedule
    ADD CONSTRAINT rate_schedule_pkey PRIMARY KEY (singleton);

GRANT SELECT,UPDATE ON TABLE sms.rate_schedule TO sms_dispatcher;

INSERT INTO sms.rate_schedule DEFAULT VALUES;
