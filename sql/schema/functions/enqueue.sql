-- Producers' enqueue: the job's id; a repeated idempotency key returns the first job's id (whatever
-- the repeat's other arguments). Only producer columns can be set through it. SECURITY DEFINER so a
-- producer needs nothing but EXECUTE; a plain INSERT keeps working too.
CREATE OR REPLACE FUNCTION sms.enqueue(channel text, phone_number text, phone_country_code text DEFAULT NULL::text, priority smallint DEFAULT 0, expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone, idempotency_key text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb, client_ip inet DEFAULT NULL::inet, user_ref text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    -- Bounded: a first job deleted (purged) between the conflict and the lookup is inserted again.
    FOR attempt IN 1 .. 3 LOOP
        INSERT INTO sms.jobs AS j (channel, phone_number, phone_country_code, priority, expires_at,
                                   idempotency_key, metadata, client_ip, user_ref)
        VALUES (enqueue.channel, enqueue.phone_number, enqueue.phone_country_code,
                COALESCE(enqueue.priority, 0), enqueue.expires_at, enqueue.idempotency_key,
                enqueue.metadata, enqueue.client_ip, enqueue.user_ref)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING j.id INTO v_id;
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
        SELECT j.id INTO v_id FROM sms.jobs j WHERE j.idempotency_key = enqueue.idempotency_key;
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'sms.enqueue: idempotency key % kept conflicting with a job that vanished', enqueue.idempotency_key
        USING ERRCODE = '40001';
END;
$$;

REVOKE ALL ON FUNCTION sms.enqueue(channel text, phone_number text, phone_country_code text, priority smallint, expires_at timestamp with time zone, idempotency_key text, metadata jsonb, client_ip inet, user_ref text) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.enqueue(channel text, phone_number text, phone_country_code text, priority smallint, expires_at timestamp with time zone, idempotency_key text, metadata jsonb, client_ip inet, user_ref text) TO sms_producer;
