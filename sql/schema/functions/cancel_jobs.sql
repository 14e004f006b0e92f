-- Operator `cancel`: pending jobs become `cancelled`, announced to producers like every terminal state;
-- a cancelled job whose earlier call may have gone out says so (sms.unproven_message).
-- Per id given: whether it was cancelled, and its state (NULL: no such job).
CREATE OR REPLACE FUNCTION sms.cancel_jobs(p_ids bigint[]) RETURNS TABLE(r_id bigint, r_cancelled boolean, r_state text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_cancelled bigint[];
BEGIN
    WITH cancelled AS (
        UPDATE sms.jobs j SET state = 'cancelled', finished_at = now(), updated_at = now(),
            message = CASE WHEN j.uncertain THEN sms.unproven_message('cancelled by an operator')
                           ELSE 'cancelled by an operator' END
        WHERE j.id = ANY (p_ids) AND j.state = 'pending'
        RETURNING j.id
    )
    SELECT COALESCE(array_agg(cancelled.id ORDER BY cancelled.id), '{}') INTO v_cancelled FROM cancelled;
    IF cardinality(v_cancelled) > 0 THEN
        PERFORM sms.announce(v_cancelled, array_fill('cancelled'::text, ARRAY[cardinality(v_cancelled)]));
    END IF;
    RETURN QUERY
    SELECT t.id, t.id = ANY (v_cancelled), j.state
    FROM unnest(p_ids) AS t(id) LEFT JOIN sms.jobs j ON j.id = t.id
    ORDER BY t.id;
END;
$$;

REVOKE ALL ON FUNCTION sms.cancel_jobs(p_ids bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.cancel_jobs(p_ids bigint[]) TO sms_operator;
