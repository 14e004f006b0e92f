-- A job that ends in a state other than `sent` while an earlier call of it may have reached GenAuth
-- says so, in these words, wherever it is settled.
CREATE OR REPLACE FUNCTION sms.unproven_message(p_message text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF position('may have been delivered' IN COALESCE(p_message, '')) > 0 THEN
        RETURN p_message;
    END IF;
    RETURN COALESCE(p_message || '; ', '')
        || 'delivery unknown: an earlier call whose answer never came may have been delivered';
END;
$$;
