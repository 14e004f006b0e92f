-- A phone_key's country code ('+86' of '+86 13800138000'), for the guard's per-country limits.
CREATE OR REPLACE FUNCTION sms.phone_country(p_phone_key text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT split_part(p_phone_key, ' ', 1) $$;
