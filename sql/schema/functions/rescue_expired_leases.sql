-- The rescue: jobs whose lease (sms.leases) ran out go back to pending, or end. A job whose call may
-- have gone out gets its proof_until from the grant's slot (the throttle row's window runs from the
-- slot: window_until = slot + p_window + 1 s) + p_horizon. Under at-least-once it is retried at once
-- while that window is open (the claim takes it first); once it has passed, the holder's own answer
-- (which lands on a rescued row: same claim token) gets p_holder_grace seconds first, since the
-- retry may be a second SMS. Under at-most-once it ends `failed` with sms.unproven_message. Attempts
-- are capped as the daemon caps them: the job's max_attempts, or its channel's
-- (sms.channel_settings.max_attempts, published by the daemons) when lower.
CREATE OR REPLACE FUNCTION sms.rescue_expired_leases(p_policy text, p_announce boolean DEFAULT true, p_window double precision DEFAULT 60, p_horizon double precision DEFAULT 60, p_holder_grace double precision DEFAULT 15) RETURNS TABLE(r_job_id bigint, r_state text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_tokens bigint[];
    v_ids bigint[];
BEGIN
    SELECT array_agg(l.lease_token) INTO v_tokens
    FROM (SELECT s.lease_token FROM sms.leases s WHERE s.until < now() FOR UPDATE SKIP LOCKED) l;
    IF v_tokens IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(x.id) INTO v_ids
    FROM (SELECT j.id
          FROM sms.leases l CROSS JOIN LATERAL unnest(l.job_ids) AS u(id)
          JOIN sms.jobs j ON j.id = u.id AND j.lease_token = l.lease_token
          WHERE l.lease_token = ANY (v_tokens) AND j.state = 'running' AND j.locked_until < now()
          FOR UPDATE OF j SKIP LOCKED) x;
    IF v_ids IS NOT NULL THEN
        RETURN QUERY
        WITH marked AS (
            SELECT j.id,
                   COALESCE(j.sending_at, (SELECT t.window_until - make_interval(secs => p_window + 1)
                                           FROM sms.throttle t
                                           WHERE t.phone_key = j.phone_key AND t.channel = j.channel
                                             AND t.job_id = j.id AND t.lease_token = j.lease_token)) AS slot,
                   least(j.max_attempts, s.max_attempts) AS max_attempts
            FROM sms.jobs j LEFT JOIN sms.channel_settings s ON s.channel = j.channel
            WHERE j.id = ANY (v_ids) AND j.state = 'running' AND j.locked_until < now()
        ), expired AS (
            SELECT m.id, m.slot IS NOT NULL AS sending, m.max_attempts,
                   least(j.proof_until, m.slot + make_interval(secs => p_horizon)) AS proof_until
            FROM marked m JOIN sms.jobs j ON j.id = m.id
        ), decided AS (
            SELECT e.*,
                   CASE WHEN NOT e.sending THEN 'pending'
                        WHEN p_policy = 'at-most-once' OR j.attempts + 1 >= e.max_attempts THEN 'failed'
                        ELSE 'pending' END AS state,
                   e.sending AND e.proof_until <= now() + interval '1 second' AS past_proof
            FROM expired e JOIN sms.jobs j ON j.id = e.id
        ), rescued AS (
            UPDATE sms.jobs j SET
                state = d.state,
                attempts = j.attempts + CASE WHEN d.sending THEN 1 ELSE 0 END,
                uncertain = j.uncertain OR d.sending,
                proof_until = CASE WHEN d.sending THEN d.proof_until ELSE j.proof_until END,
                message = CASE
                    WHEN NOT d.sending THEN
                        'lease of worker ' || j.locked_by || ' expired before its API call; returned to pending'
                    WHEN p_policy = 'at-most-once' THEN
                        'delivery unknown: worker ' || j.locked_by || ' stopped holding it during the API call; not retried (delivery.policy = at-most-once); the SMS may have been delivered'
                    WHEN d.state = 'failed' THEN
                        'delivery unknown: worker ' || j.locked_by || ' stopped holding it during the API call; attempts exhausted ('
                        || (j.attempts + 1) || ' of ' || d.max_attempts || '); the SMS may have been delivered'
                    WHEN d.past_proof THEN
                        'delivery unknown: worker ' || j.locked_by || ' stopped holding it during the API call, and GenAuth''s window to prove that call closed at '
                        || to_char(d.proof_until AT TIME ZONE 'UTC', 'HH24:MI:SS') || ' UTC; its own answer gets '
                        || p_holder_grace || ' s to land, then the job is retried and a second SMS is possible (delivery.policy = at-least-once)'
                    ELSE
                        'delivery unknown: worker ' || j.locked_by || ' stopped holding it during the API call; retrying while GenAuth can still prove that call (delivery.policy = at-least-once)'
                    END,
                finished_at = CASE WHEN d.state = 'failed' THEN now() ELSE NULL END,
                run_at = CASE WHEN d.past_proof AND d.state = 'pending' THEN now() + make_interval(secs => p_holder_grace)
                              ELSE now() END,
                updated_at = now(),
                locked_by = NULL,
                locked_until = NULL,
                sending_at = NULL
            FROM decided d
            WHERE j.id = d.id
            RETURNING j.id, j.state
        ), announced AS (
            SELECT sms.announce(array_agg(id ORDER BY id), array_agg(state ORDER BY id)) AS n FROM rescued
            WHERE p_announce
        )
        SELECT r.id, r.state FROM rescued r, announced a WHERE a.n IS NOT NULL;
    END IF;
    DELETE FROM sms.leases l
    WHERE l.lease_token = ANY (v_tokens)
      AND NOT EXISTS (SELECT 1 FROM sms.jobs j
                      WHERE j.id = ANY (l.job_ids) AND j.lease_token = l.lease_token AND j.state = 'running');
END;
$$;

GRANT ALL ON FUNCTION sms.rescue_expired_leases(p_policy text, p_announce boolean, p_window double precision, p_horizon double precision, p_holder_grace double precision) TO sms_dispatcher;
