-- Operators: allow a prefix (+, the country code, digits; spaces ignored): the guard never limits nor
-- blocks its numbers. A note given replaces the old one. Returns the prefix as stored.
CREATE OR REPLACE FUNCTION sms.fraud_allow(p_prefix text, p_note text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    v_prefix text := replace(p_prefix, ' ', '');
BEGIN
    IF v_prefix !~ '^\+[1-9][0-9]{0,14}$' THEN
        RAISE EXCEPTION 'fraud allow: "%" is not a number prefix: + and the country code, then digits (e.g. +4470090)',
            left(p_prefix, 40) USING ERRCODE = '22023';
    END IF;
    INSERT INTO sms.fraud_allowed AS a (prefix, note) VALUES (v_prefix, p_note)
    ON CONFLICT (prefix) DO UPDATE SET note = COALESCE(EXCLUDED.note, a.note);
    RETURN v_prefix;
END;
$_$;

REVOKE ALL ON FUNCTION sms.fraud_allow(p_prefix text, p_note text) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.fraud_allow(p_prefix text, p_note text) TO sms_operator;
