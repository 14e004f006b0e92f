-- Pending jobs of paused channels whose time ran out end `expired` (at most p_limit per call; the
-- rescuer calls it every round): expires_at, or created_at + the channel's published TTL. A row the
-- rescue left uncertain and still fenced for its holder (its call's outcome may yet arrive) is left
-- alone; an expired job whose earlier call may have gone out says so (sms.unproven_message).
-- Also tells up to p_limit paused jobs why they wait (those sms.pause did not reach). p_announce
-- false: the same without NOTIFY (PostgreSQL refuses notifications while its queue is full).
CREATE OR REPLACE FUNCTION sms.expire_paused_jobs(p_limit integer, p_announce boolean DEFAULT true) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_paused text[];
    v_ids bigint[];
    v_control sms.controls;
BEGIN
    v_paused := sms.paused_channels();
    IF v_paused IS NULL THEN
        RETURN 0;
    END IF;
    WITH due AS (
        SELECT j.id FROM sms.jobs j LEFT JOIN sms.channel_settings s ON s.channel = j.channel
        WHERE j.due_at IS NOT NULL AND j.state = 'pending' AND ('*' = ANY (v_paused) OR j.channel = ANY (v_paused))
          AND NOT (j.uncertain AND j.lease_token IS NOT NULL)
          AND (j.expires_at <= now()
               OR (s.ttl_seconds > 0 AND j.created_at + make_interval(secs => s.ttl_seconds) <= now()))
        LIMIT p_limit
        FOR UPDATE OF j SKIP LOCKED
    ), expired AS (
        UPDATE sms.jobs j SET state = 'expired', finished_at = now(), updated_at = now(),
            message = (SELECT CASE WHEN j.uncertain THEN sms.unproven_message(m) ELSE m END
                       FROM (SELECT CASE WHEN j.expires_at <= now()
                                         THEN 'expires_at passed while its channel was paused'
                                         ELSE 'older than ' || j.channel || '''s TTL while its channel was paused' END AS m) x)
        FROM due WHERE j.id = due.id
        RETURNING j.id
    )
    SELECT array_agg(id) INTO v_ids FROM expired;
    FOR v_control IN SELECT * FROM sms.controls c WHERE c.channel = ANY (v_paused)
                     ORDER BY c.channel = '*' DESC LOOP
        UPDATE sms.jobs j SET message = sms.pause_message(v_control), updated_at = now()
        WHERE j.id IN (SELECT p.id FROM sms.jobs p
                       WHERE p.due_at IS NOT NULL AND p.state = 'pending'
                         AND (v_control.channel = '*' OR p.channel = v_control.channel)
                         AND p.message IS DISTINCT FROM sms.pause_message(v_control)
                         AND (p.message IS NULL OR p.message NOT LIKE 'paused: %' OR v_control.channel = '*')
                       LIMIT p_limit FOR UPDATE SKIP LOCKED);
    END LOOP;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    IF p_announce THEN
        PERFORM sms.announce(v_ids, array_fill('expired'::text, ARRAY[cardinality(v_ids)]));
    END IF;
    RETURN cardinality(v_ids);
END;
$$;

GRANT ALL ON FUNCTION sms.expire_paused_jobs(p_limit integer, p_announce boolean) TO sms_dispatcher;
