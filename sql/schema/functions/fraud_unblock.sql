-- Operators: end a block now (and keep the evaluator off the key for one block time); allow or
-- disallow a prefix. Keys are matched without spaces: '+86 1380013' and '+861380013' are one.
CREATE OR REPLACE FUNCTION sms.fraud_unblock(p_key text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_count int;
BEGIN
    UPDATE sms.fraud_blocks SET until = least(until, now()), cleared_by = session_user, cleared_at = now()
    WHERE replace(key, ' ', '') = replace(p_key, ' ', '') AND until > now();
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

REVOKE ALL ON FUNCTION sms.fraud_unblock(p_key text) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.fraud_unblock(p_key text) TO sms_operator;
