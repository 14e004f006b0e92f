-- sms-dispatcher schema, version 3: crash safety.

ALTER TABLE sms.jobs
    -- Set (in the same statement that reserves the phone+channel slot) just before the API call goes
    -- out, cleared by the write-back. A rescued job with sending_at set may or may not have been sent.
    ADD COLUMN sending_at timestamptz NULL,
    -- The last call's outcome is unknown (its worker died during it). A retry that GenAuth answers with
    -- "one SMS per phone per channel per window" then proves the earlier call went through.
    ADD COLUMN uncertain boolean NOT NULL DEFAULT false;

-- As in version 2, and granted jobs are marked `sending_at = now()` in the same transaction.
CREATE OR REPLACE FUNCTION sms.reserve_sends(
    p_job_ids bigint[], p_phone_keys text[], p_channels text[], p_window float8, p_hour_cap int, p_day_cap int)
RETURNS TABLE (r_job_id bigint, r_verdict text, r_until timestamptz, r_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_until timestamptz;
    v_holder bigint;
    v_hour int;
    v_day int;
    v_granted bigint[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330012))
    FROM (SELECT DISTINCT unnest(p_phone_keys) AS k ORDER BY 1) keys;

    FOR i IN 1 .. COALESCE(array_length(p_job_ids, 1), 0) LOOP
        r_job_id := p_job_ids[i];
        r_until := NULL;
        r_detail := NULL;

        SELECT t.window_until, t.job_id INTO v_until, v_holder
        FROM sms.throttle t WHERE t.phone_key = p_phone_keys[i] AND t.channel = p_channels[i];
        IF v_until IS NOT NULL AND v_until > now() AND v_holder <> r_job_id THEN
            r_verdict := 'deferred';
            r_until := v_until;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF p_hour_cap > 0 OR p_day_cap > 0 THEN
            SELECT count(*) FILTER (WHERE s.sent_at > now() - interval '1 hour'), count(*)
            INTO v_hour, v_day
            FROM sms.jobs s
            WHERE s.phone_key = p_phone_keys[i] AND s.state = 'sent' AND s.sent_at > now() - interval '1 day';
            SELECT v_hour + count(*), v_day + count(*) INTO v_hour, v_day
            FROM sms.throttle t JOIN sms.jobs j ON j.id = t.job_id
            WHERE t.phone_key = p_phone_keys[i] AND t.job_id <> r_job_id AND j.state = 'running';
            IF p_hour_cap > 0 AND v_hour >= p_hour_cap THEN
                r_verdict := 'capped';
                r_detail := format('per-phone cap reached: %s SMS in the last hour across all channels (caps.per_phone_hour = %s)', v_hour, p_hour_cap);
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF p_day_cap > 0 AND v_day >= p_day_cap THEN
                r_verdict := 'capped';
                r_detail := format('per-phone cap reached: %s SMS in the last day across all channels (caps.per_phone_day = %s)', v_day, p_day_cap);
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;

        INSERT INTO sms.throttle AS t (phone_key, channel, window_until, job_id)
        VALUES (p_phone_keys[i], p_channels[i], now() + make_interval(secs => p_window), r_job_id)
        ON CONFLICT (phone_key, channel)
        DO UPDATE SET window_until = EXCLUDED.window_until, job_id = EXCLUDED.job_id;
        v_granted := v_granted || r_job_id;
        r_verdict := 'granted';
        RETURN NEXT;
    END LOOP;

    UPDATE sms.jobs SET sending_at = now() WHERE id = ANY (v_granted);
END;
$$;

-- Returns expired leases to the queue, by the delivery policy: a job that never reached the API is
-- simply pending again; one whose call may have gone out counts that attempt and is retried under
-- at-least-once, or ends `failed` saying delivery is unknown under at-most-once.
CREATE FUNCTION sms.rescue_expired_leases(p_policy text)
RETURNS TABLE (r_job_id bigint, r_state text)
LANGUAGE sql AS $$
    UPDATE sms.jobs j SET
        state = CASE
            WHEN j.sending_at IS NULL THEN 'pending'
            WHEN p_policy = 'at-most-once' OR j.attempts + 1 >= j.max_attempts THEN 'failed'
            ELSE 'pending' END,
        attempts = j.attempts + CASE WHEN j.sending_at IS NULL THEN 0 ELSE 1 END,
        uncertain = j.sending_at IS NOT NULL,
        message = CASE
            WHEN j.sending_at IS NULL THEN
                'lease of worker ' || j.locked_by || ' expired before its API call; returned to pending'
            WHEN p_policy = 'at-most-once' THEN
                'delivery unknown: worker ' || j.locked_by || ' stopped during the API call; not retried (delivery.policy = at-most-once)'
            WHEN j.attempts + 1 >= j.max_attempts THEN
                'delivery unknown: worker ' || j.locked_by || ' stopped during the API call; attempts exhausted (' || (j.attempts + 1) || ' of ' || j.max_attempts || ')'
            ELSE
                'delivery unknown: worker ' || j.locked_by || ' stopped during the API call; retrying (delivery.policy = at-least-once)'
            END,
        finished_at = CASE
            WHEN j.sending_at IS NOT NULL AND (p_policy = 'at-most-once' OR j.attempts + 1 >= j.max_attempts) THEN now()
            ELSE NULL END,
        run_at = now(),
        updated_at = now(),
        locked_by = NULL,
        locked_until = NULL,
        sending_at = NULL
    WHERE j.state = 'running' AND j.locked_until < now()
    RETURNING j.id, j.state;
$$;
