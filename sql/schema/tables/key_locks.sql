-- Rows the reservation locks (FOR UPDATE SKIP LOCKED) for each phone and fraud-guard key it decides
-- on: locks only sms_dispatcher may take, so no other login can stall the daemons by holding them.
-- UNLOGGED: the rows carry nothing but their key, and a lock writes no WAL.
CREATE UNLOGGED TABLE sms.key_locks (
    key text NOT NULL
);

ALTER TABLE ONLY sms.key_locks
    ADD CONSTRAINT key_locks_pkey PRIMARY KEY (key);

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE sms.key_locks TO sms_dispatcher;
