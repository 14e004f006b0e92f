-- Ends the pause of one channel, or every pause (p_channel NULL). Returns how many pauses it ended.
-- Pending jobs lose their "paused" message unless another pause still holds them; the daemons are
-- woken to claim them.
CREATE OR REPLACE FUNCTION sms.resume(p_channel text DEFAULT NULL::text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_ended int;
    v_channel text := NULLIF(p_channel, '*');
BEGIN
    DELETE FROM sms.controls c WHERE v_channel IS NULL OR c.channel = v_channel OR c.paused_until <= now();
    GET DIAGNOSTICS v_ended = ROW_COUNT;
    -- Bounded and never waiting, as in sms.pause; a job left with the old message gets its next one
    -- when it is claimed, within a poll interval.
    UPDATE sms.jobs j SET message = NULL, updated_at = now()
    WHERE j.id IN (SELECT p.id FROM sms.jobs p
                   WHERE p.state = 'pending' AND p.message LIKE 'paused: %'
                     AND (v_channel IS NULL OR p.channel = v_channel)
                     AND NOT EXISTS (SELECT 1 FROM sms.controls c WHERE c.channel IN ('*', p.channel))
                   LIMIT 10000 FOR UPDATE SKIP LOCKED);
    PERFORM pg_notify('sms_controls', COALESCE(v_channel, '*'));
    PERFORM pg_notify('sms_jobs', '');
    RETURN v_ended;
END;
$$;

REVOKE ALL ON FUNCTION sms.resume(p_channel text) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.resume(p_channel text) TO sms_operator;
