-- The pause that holds a channel now (its own, or the '*' pause), or NULL: read by the
-- channel-defaults trigger on every insert, so PL/pgSQL (its plan cached for the session).
CREATE OR REPLACE FUNCTION sms.pause_of(p_channel text) RETURNS sms.controls
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    -- A scalar subquery: NULL when no pause holds, as the SQL function returned.
    RETURN (SELECT c FROM sms.controls c
            WHERE c.channel IN ('*', p_channel) AND (c.paused_until IS NULL OR c.paused_until > now())
            ORDER BY c.channel = '*' DESC LIMIT 1);
END;
$$;
