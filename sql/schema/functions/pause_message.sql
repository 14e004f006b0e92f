-- The message a paused pending job carries (so a producer reading its row learns why it waits).
CREATE OR REPLACE FUNCTION sms.pause_message(p_control sms.controls) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT 'paused: ' || CASE WHEN p_control.channel = '*' THEN 'all channels' ELSE p_control.channel END
        || ' paused by ' || p_control.paused_by
        || ' since ' || to_char(p_control.paused_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
        || COALESCE(' until ' || to_char(p_control.paused_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', '')
        || COALESCE(': ' || p_control.reason, '')
        || '; waiting (its TTL still applies)'
$$;
