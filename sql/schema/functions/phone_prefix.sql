-- A number's prefix (the number without its last four digits, with its country code) and country,
-- from its phone_key ('+CC national'): the one definition, used by the guard and by mark_verified.
CREATE OR REPLACE FUNCTION sms.phone_prefix(p_phone_key text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT left(p_phone_key, -4) $$;
