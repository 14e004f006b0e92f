-- The anomaly side, one evaluator of the cluster per p_interval seconds (a daemon whose round comes
-- sooner after another's, or while another's runs, returns nothing: it row-locks sms.fraud_state with
-- SKIP LOCKED). Folds the closed minutes into the baselines, then blocks (or keeps blocked) each prefix
-- and country with a history of p_baseline_hours whose last 10 minutes brought at least p_min_requests
-- requests, more than p_factor times its baseline, with fewer than p_max_verified of them verified
-- while its baseline shows at least twice that share verified (a producer that never calls
-- mark_verified gets no anomaly blocks: absent verifications would mean nothing). Returns the blocks it
-- made or extended (r_new: a block that starts now). Old state is pruned by sms.fraud_prune.
CREATE OR REPLACE FUNCTION sms.fraud_evaluate(p_now timestamp with time zone, p_factor double precision, p_min_requests integer, p_max_verified double precision, p_block_minutes double precision, p_baseline_hours double precision, p_interval double precision) RETURNS TABLE(r_scope text, r_key text, r_since timestamp with time zone, r_until timestamp with time zone, r_reason text, r_new boolean)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_upto timestamptz := date_trunc('minute', p_now);
    v_from timestamptz;
    v_evaluated timestamptz;
    -- Per minute, for a time constant of p_baseline_hours.
    v_decay float8 := exp(-1.0 / (60.0 * greatest(p_baseline_hours, 0.1)));
    v_block interval := make_interval(secs => p_block_minutes * 60);
BEGIN
    -- One evaluator at a time: a round that finds the state row held by another skips (a row lock only
    -- the daemon's roles can take; it was an advisory lock any login could hold).
    SELECT f.folded_until, f.evaluated_at INTO v_from, v_evaluated FROM sms.fraud_state f FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Another daemon evaluated a moment ago (a clock that went back counts as now).
    IF v_evaluated > p_now - make_interval(secs => 0.9 * p_interval) AND v_evaluated <= p_now THEN
        RETURN;
    END IF;
    -- Bounded catch-up (older counters are pruned anyway); a clock that went back folds nothing and
    -- leaves the mark where it was, so no minute is folded twice.
    v_from := least(greatest(COALESCE(v_from, v_upto), v_upto - interval '2 hours'), v_upto);

    -- Minute m ends at m + 1 min; its sends and verifications are weighted by the minutes since then.
    INSERT INTO sms.fraud_baselines AS b (scope, key, first_seen, folded_until, hourly_sends, hourly_verified)
    SELECT m.scope, m.key, min(m.minute), v_upto,
           60 * (1 - v_decay) * sum(m.sends * power(v_decay, extract(epoch FROM v_upto - m.minute) / 60 - 1)),
           60 * (1 - v_decay) * sum(m.verified * power(v_decay, extract(epoch FROM v_upto - m.minute) / 60 - 1))
    FROM (SELECT c.scope, c.key, c.minute, c.sends, 0 AS verified
          FROM sms.fraud_counts c
          WHERE c.scope IN ('prefix', 'country') AND c.minute >= v_from AND c.minute < v_upto
          UNION ALL
          SELECT v.scope, v.key, v.minute, 0, v.verified
          FROM sms.fraud_verifications v
          WHERE v.minute >= v_from AND v.minute < v_upto) m
    GROUP BY m.scope, m.key
    ORDER BY m.scope, m.key
    ON CONFLICT (scope, key) DO UPDATE SET
        hourly_sends = b.hourly_sends * power(v_decay, extract(epoch FROM v_upto - b.folded_until) / 60)
                       + EXCLUDED.hourly_sends,
        hourly_verified = b.hourly_verified * power(v_decay, extract(epoch FROM v_upto - b.folded_until) / 60)
                          + EXCLUDED.hourly_verified,
        folded_until = v_upto;
    UPDATE sms.fraud_state
    SET folded_until = greatest(COALESCE(folded_until, v_upto), v_upto), evaluated_at = p_now;

    RETURN QUERY
    WITH recent AS (
        -- Requests a rolling limit stopped are left out: that traffic is held already.
        SELECT m.scope, m.key, sum(m.requests)::float8 AS requests, sum(m.verified)::float8 AS verified
        FROM (SELECT c.scope, c.key, c.requests - c.limited AS requests, 0 AS verified
              FROM sms.fraud_counts c
              WHERE c.scope IN ('prefix', 'country') AND c.minute > p_now - interval '10 minutes'
              UNION ALL
              SELECT v.scope, v.key, 0, v.verified
              FROM sms.fraud_verifications v
              WHERE v.minute > p_now - interval '10 minutes') m
        GROUP BY m.scope, m.key
        HAVING sum(m.requests) >= greatest(p_min_requests, 1)
    ), judged AS (
        SELECT r.scope, r.key, r.requests, r.verified,
               -- Bias-corrected: a key seen for less than a time constant is not under-estimated.
               b.hourly_sends * power(v_decay, extract(epoch FROM p_now - b.folded_until) / 60)
                   / greatest(1 - power(v_decay, extract(epoch FROM p_now - b.first_seen) / 60), 1e-9) AS hourly,
               b.hourly_verified / NULLIF(b.hourly_sends, 0) AS usual_verified
        FROM recent r
        JOIN sms.fraud_baselines b ON b.scope = r.scope AND b.key = r.key
        WHERE b.first_seen <= p_now - make_interval(secs => p_baseline_hours * 3600)
    ), anomalous AS (
        SELECT j.* FROM judged j
        WHERE j.requests > p_factor * j.hourly / 6
          AND j.verified < p_max_verified * j.requests
          AND j.usual_verified >= 2 * p_max_verified
          AND NOT EXISTS (SELECT 1 FROM sms.fraud_allowed a WHERE starts_with(replace(j.key, ' ', ''), a.prefix))
    ), blocked AS (
        INSERT INTO sms.fraud_blocks AS f (scope, key, since, until, reason)
        SELECT a.scope, a.key, p_now, p_now + v_block,
               format('anomaly: %s requests in 10 min against a usual %s, %s%% verified (usually %s%%)',
                      a.requests, round((a.hourly / 6)::numeric, 1), round((100 * a.verified / a.requests)::numeric),
                      round((100 * a.usual_verified)::numeric))
        FROM anomalous a
        ORDER BY a.scope, a.key
        ON CONFLICT (scope, key) DO UPDATE SET
            since = CASE WHEN f.until > p_now THEN f.since ELSE EXCLUDED.since END,
            until = greatest(f.until, EXCLUDED.until),
            reason = EXCLUDED.reason,
            cleared_by = NULL,
            cleared_at = NULL
        WHERE f.cleared_at IS NULL OR f.cleared_at <= p_now - v_block
        RETURNING f.scope, f.key, f.since, f.until, f.reason, f.since = p_now AS new
    )
    SELECT * FROM blocked;
END;
$$;

GRANT ALL ON FUNCTION sms.fraud_evaluate(p_now timestamp with time zone, p_factor double precision, p_min_requests integer, p_max_verified double precision, p_block_minutes double precision, p_baseline_hours double precision, p_interval double precision) TO sms_dispatcher;
