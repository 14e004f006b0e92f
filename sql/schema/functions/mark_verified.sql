-- Only the login role that enqueued a job reports its code entered: any producer could otherwise mark
-- another's jobs verified and steer the fraud guard's baselines.
CREATE OR REPLACE FUNCTION sms.mark_verified(job_id bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_phone_key text;
    v_user text;
BEGIN
    UPDATE sms.jobs j SET verified_at = now()
    WHERE j.id = mark_verified.job_id AND j.state = 'sent' AND j.verified_at IS NULL
      AND j.enqueued_by = session_user
    RETURNING j.phone_key, j.user_ref INTO v_phone_key, v_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sms.fraud_verified(now(), ARRAY[v_phone_key], ARRAY[v_user]);
    RETURN true;
END;
$$;

REVOKE ALL ON FUNCTION sms.mark_verified(job_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.mark_verified(job_id bigint) TO sms_producer;
