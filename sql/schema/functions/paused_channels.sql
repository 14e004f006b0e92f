-- The channels paused now ('*': all), or NULL: what the claim, the reservation and the expiry obey.
-- PL/pgSQL, so its plan is cached for the session.
CREATE OR REPLACE FUNCTION sms.paused_channels() RETURNS text[]
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN (SELECT array_agg(c.channel) FROM sms.controls c WHERE c.paused_until IS NULL OR c.paused_until > now());
END;
$$;
