-- Pauses one channel (or all, p_channel NULL) until resumed or for p_for. Pending jobs of that scope
-- say so in their message; the daemons stop claiming them at their next claim (the claim reads
-- sms.controls) and hear of it at once (NOTIFY sms_controls) for their logs, metrics and status.
-- Returns the stored row. Pausing again replaces the reason and the end.
CREATE OR REPLACE FUNCTION sms.pause(p_channel text DEFAULT NULL::text, p_reason text DEFAULT NULL::text, p_for interval DEFAULT NULL::interval) RETURNS sms.controls
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_row sms.controls;
BEGIN
    IF p_for IS NOT NULL AND p_for <= interval '0' THEN
        RAISE EXCEPTION 'sms.pause: the duration must be positive, got %', p_for USING ERRCODE = '22023';
    END IF;
    DELETE FROM sms.controls c WHERE c.paused_until <= now();
    -- session_user, not current_user: inside this SECURITY DEFINER function current_user is its owner.
    INSERT INTO sms.controls AS c (channel, paused_by, reason, paused_since, paused_until)
    VALUES (COALESCE(p_channel, '*'), session_user, p_reason, now(), now() + p_for)
    ON CONFLICT (channel) DO UPDATE SET paused_by = EXCLUDED.paused_by, reason = EXCLUDED.reason,
        paused_until = EXCLUDED.paused_until
    RETURNING c.* INTO v_row;
    -- Tell the waiting jobs, a bounded batch at a time and never waiting for a row someone holds
    -- (a write-back, a claim): the pause must not stall the queue, nor deadlock with a write-back
    -- that supersedes pending rows. The rest are told by sms.expire_paused_jobs' rounds.
    UPDATE sms.jobs j SET message = sms.pause_message(v_row), updated_at = now()
    WHERE j.id IN (SELECT p.id FROM sms.jobs p
                   WHERE p.state = 'pending' AND (v_row.channel = '*' OR p.channel = v_row.channel)
                   LIMIT 10000 FOR UPDATE SKIP LOCKED);
    PERFORM pg_notify('sms_controls', v_row.channel);
    RETURN v_row;
END;
$$;

REVOKE ALL ON FUNCTION sms.pause(p_channel text, p_reason text, p_for interval) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.pause(p_channel text, p_reason text, p_for interval) TO sms_operator;
