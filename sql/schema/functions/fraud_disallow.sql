-- Operators: take a prefix off the allow list. Returns whether it was there.
CREATE OR REPLACE FUNCTION sms.fraud_disallow(p_prefix text) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH gone AS (DELETE FROM sms.fraud_allowed WHERE prefix = replace(p_prefix, ' ', '') RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;

REVOKE ALL ON FUNCTION sms.fraud_disallow(p_prefix text) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.fraud_disallow(p_prefix text) TO sms_operator;
