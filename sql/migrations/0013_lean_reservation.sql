-- Version 13: a leaner reservation. At 500 single inserts a second the claim loop runs a turn (claim,
-- then reservation and COMMIT) for every job or two, and the next job waits for the turn in progress:
-- the turn's length is most of the latency from insert to call, and the reservation is most of the
-- turn. Each statement a PL/pgSQL function runs costs its executor's start-up, whatever it reads;
-- the fraud guard ran seven for a one-job batch. Same signatures, same answers, same locks in the
-- same order:
--
-- * sms.fraud_decide computes the keys with expressions (no statement), reads the counts, whether a
--   block is in force and the batch's allow-listed prefixes in one statement, and, for the common
--   batch (every job passes, none allow-listed), writes the counters with one plain upsert and
--   returns its rows without a statement. A batch where some job may be stopped takes the job-by-job
--   path as before.
-- * sms.reserve_sends aggregates its jobs unsorted (four sorts fewer) and returns its rows without a
--   statement.
--
-- `sms-bench` on a one-job batch: the guard 0.48 -> 0.39 ms, the reservation 0.69 -> 0.63 ms (README,
-- Performance, issue 15 round 3).

-- Version 10's guard (see there for the decisions, the locks and the counters), in fewer statements.
CREATE OR REPLACE FUNCTION sms.fraud_decide(
    p_now timestamptz, p_phone_keys text[], p_ips inet[], p_users text[], p_mode text, p_limits int[],
    p_trust_days int)
RETURNS TABLE (r_index int, r_decision text, r_rule text, r_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    n int := COALESCE(cardinality(p_phone_keys), 0);
    c_scopes constant text[] := ARRAY['ip', 'user', 'prefix', 'country'];
    c_rules constant text[] := ARRAY['per_ip_hour', 'per_user_hour', 'per_prefix_hour', 'per_country_hour'];
    c_labels constant text[] := ARRAY['client_ip', 'user_ref', 'prefix', 'country'];
    v_minute timestamptz := date_trunc('minute', p_now);
    -- The minute holding now - 1 hour is counted whole: the window is a little longer than an hour,
    -- never shorter, so no hour ever sees more than a limit.
    v_since timestamptz := date_trunc('minute', p_now - interval '1 hour');
    v_scope text[];    -- per job and scope (4 per job, job by job): the counter's scope and key
    v_key text[];
    v_used jsonb;
    v_fits boolean;
    v_current text[];
    v_blocks jsonb;
    v_allow text[];
    v_trusted text[];
    v_allowed boolean[];
    v_decisions text[];
    v_rules text[];
    v_details text[];
    v_rule text;
    v_detail text;
    v_k text;
    v_n int;
    v_block text;
    i int;
    v_any_block boolean;
    s int;
BEGIN
    IF n = 0 OR p_mode NOT IN ('enforce', 'monitor') THEN
        RETURN;
    END IF;
    -- Four keys per job, job by job: expressions, no statement.
    v_scope := '{}';
    v_key := '{}';
    FOR i IN 1 .. n LOOP
        v_scope := v_scope || c_scopes;
        v_key := v_key || ARRAY[sms.client_key(p_ips[i]), left(NULLIF(p_users[i], ''), 200),
                                sms.phone_prefix(p_phone_keys[i]), sms.phone_country(p_phone_keys[i])];
    END LOOP;

    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330013))
    FROM (SELECT DISTINCT x.scope || '|' || x.key AS k
          FROM unnest(v_scope, v_key) AS x(scope, key)
          WHERE x.key IS NOT NULL AND p_limits[array_position(c_scopes, x.scope)] > 0
          ORDER BY 1) keys;

    -- One read, after the locks: each limited key's sends in the window (through the primary key),
    -- whether the whole batch fits under every limit even if all of it went, which keys have a row
    -- for this minute already; whether any block is in force; the allow-listed prefixes of the batch.
    SELECT COALESCE(jsonb_object_agg(k.scope || '|' || k.key, u.used) FILTER (WHERE u.used > 0), '{}'),
           COALESCE(bool_and(COALESCE(u.used, 0) + k.n <= p_limits[k.s]), true),
           array_agg(k.scope || '|' || k.key) FILTER (WHERE u.current),
           EXISTS (SELECT 1 FROM sms.fraud_blocks b WHERE b.until > p_now),
           (SELECT array_agg(a.prefix) FROM sms.fraud_allowed a
            WHERE EXISTS (SELECT 1 FROM unnest(p_phone_keys) pk WHERE starts_with(replace(pk, ' ', ''), a.prefix)))
    INTO v_used, v_fits, v_current, v_any_block, v_allow
    FROM (SELECT p.s, x.scope, x.key, count(*) AS n
          FROM unnest(v_scope, v_key) WITH ORDINALITY AS x(scope, key, o)
          CROSS JOIN LATERAL (SELECT (x.o - 1) % 4 + 1 AS s) p
          WHERE x.key IS NOT NULL AND p_limits[p.s] > 0
          GROUP BY p.s, x.scope, x.key) k(s, scope, key, n)
    LEFT JOIN LATERAL (SELECT sum(c.sends)::int AS used, bool_or(c.minute = v_minute) AS current
                       FROM sms.fraud_counts c
                       WHERE c.scope = k.scope AND c.key = k.key AND c.minute >= v_since) u ON true;

    -- Blocks are rare: the batch's keys are matched only while one is in force.
    IF v_any_block THEN
        SELECT jsonb_object_agg(b.scope || '|' || b.key,
                                b.reason || ' (blocked until ' || to_char(b.until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC)')
        INTO v_blocks
        FROM sms.fraud_blocks b
        WHERE b.until > p_now
          AND (b.scope, b.key) IN (SELECT x.scope, x.key FROM unnest(v_scope, v_key) AS x(scope, key)
                                   WHERE x.scope IN ('prefix', 'country'));
    END IF;

    IF v_fits AND v_blocks IS NULL AND v_allow IS NULL THEN
        -- Every job passes and none is allow-listed (the common batch): each key counts its jobs as
        -- requests and sends. Upserts in key order, like the general statement below.
        INSERT INTO sms.fraud_counts AS c (scope, key, minute, requests, sends, limited)
        SELECT x.scope, x.key, v_minute, count(*), count(*), 0
        FROM unnest(v_scope, v_key) WITH ORDINALITY AS x(scope, key, o)
        WHERE x.key IS NOT NULL AND (x.scope IN ('prefix', 'country') OR p_limits[(x.o - 1) % 4 + 1] > 0)
        GROUP BY x.scope, x.key
        ORDER BY x.scope, x.key
        ON CONFLICT (scope, key, minute) DO UPDATE
        SET requests = c.requests + EXCLUDED.requests, sends = c.sends + EXCLUDED.sends;
        -- Rows without a statement.
        FOR i IN 1 .. n LOOP
            r_index := i;
            r_decision := 'pass';
            RETURN NEXT;
        END LOOP;
        RETURN;
    ELSE
        IF v_blocks IS NOT NULL AND p_trust_days > 0 THEN
            SELECT array_agg(t.user_ref) INTO v_trusted FROM sms.fraud_trusted t
            WHERE t.user_ref = ANY (ARRAY(SELECT left(u, 200) FROM unnest(p_users) u))
              AND t.verified_at > p_now - make_interval(days => p_trust_days);
        END IF;
        v_allowed := '{}';
        v_decisions := '{}';
        v_rules := '{}';
        v_details := '{}';
        FOR i IN 1 .. n LOOP
            v_rule := NULL;
            v_detail := NULL;
            IF v_allow IS NOT NULL
               AND EXISTS (SELECT 1 FROM unnest(v_allow) a WHERE starts_with(replace(p_phone_keys[i], ' ', ''), a)) THEN
                v_allowed := v_allowed || true;
                v_decisions := v_decisions || 'allowed'::text;
                v_rules := v_rules || NULL::text;
                v_details := v_details || NULL::text;
                CONTINUE;
            END IF;
            v_allowed := v_allowed || false;

            -- An anomaly block names a whole prefix or country; a known user passes it.
            IF v_blocks IS NOT NULL AND NOT COALESCE(left(p_users[i], 200) = ANY (v_trusted), false) THEN
                FOR s IN 3 .. 4 LOOP
                    v_k := v_key[(i - 1) * 4 + s];
                    v_block := v_blocks ->> (c_scopes[s] || '|' || v_k);
                    IF v_block IS NOT NULL THEN
                        v_rule := c_scopes[s] || '_block';
                        -- Not the key itself: producers read every job's message, and a prefix is most
                        -- of a number (operators find it in `sms-dispatcher fraud list`).
                        v_detail := format('the number''s %s is blocked: %s', c_labels[s], v_block);
                        EXIT;
                    END IF;
                END LOOP;
            END IF;

            IF v_rule IS NULL THEN
                FOR s IN 1 .. 4 LOOP
                    v_k := v_key[(i - 1) * 4 + s];
                    CONTINUE WHEN v_k IS NULL OR COALESCE(p_limits[s], 0) <= 0;
                    v_n := COALESCE((v_used ->> (c_scopes[s] || '|' || v_k))::int, 0);
                    IF v_n >= p_limits[s] THEN
                        v_rule := c_rules[s];
                        -- The key (an IP, a user, most of a number) is not named: producers read
                        -- every job's message.
                        v_detail := format('its %s had %s SMS in the last hour (fraud.%s = %s)',
                                           c_labels[s], v_n, c_rules[s], p_limits[s]);
                        EXIT;
                    END IF;
                END LOOP;
            END IF;

            v_decisions := v_decisions || CASE WHEN v_rule IS NULL THEN 'pass'
                                               WHEN p_mode = 'monitor' THEN 'flagged' ELSE 'blocked' END;
            v_rules := v_rules || v_rule;
            v_details := v_details || CASE WHEN v_rule IS NULL THEN NULL
                                           WHEN p_mode = 'monitor' THEN 'fraud guard (monitor mode, sent): ' || v_rule || ': ' || v_detail
                                           ELSE 'fraud guard: ' || v_rule || ': ' || v_detail END;
            IF v_decisions[i] <> 'blocked' THEN
                FOR s IN 1 .. 4 LOOP
                    v_k := v_key[(i - 1) * 4 + s];
                    CONTINUE WHEN v_k IS NULL OR COALESCE(p_limits[s], 0) <= 0;
                    v_used := jsonb_set(v_used, ARRAY[c_scopes[s] || '|' || v_k],
                                        to_jsonb(COALESCE((v_used ->> (c_scopes[s] || '|' || v_k))::int, 0) + 1));
                END LOOP;
            END IF;
        END LOOP;
    END IF;

    -- The counters. ip and user are counted only while their limit is on; prefix and country always (the
    -- baselines). `limited`: stopped by a rolling limit. The anomaly side leaves those out: a limit
    -- already holds that traffic, and counting it would block a whole country for an attack the limits
    -- stopped. An ip or user key without a row for this minute gets a plain insert: only a decider
    -- holding its lock (above) writes such rows, so no other can insert it meanwhile (prefix and country
    -- rows are written by deciders without a limit on them too: upserts). The upserts go in key order
    -- (two deciders never wait on each other's rows in a cycle).
    WITH counted AS (
        SELECT x.scope, x.key, count(*) AS requests, count(*) FILTER (WHERE x.decision <> 'blocked') AS sends,
               count(*) FILTER (WHERE x.decision = 'blocked' AND x.rule LIKE 'per\_%') AS limited,
               x.scope IN ('ip', 'user') AND NOT COALESCE(x.scope || '|' || x.key = ANY (v_current), false) AS fresh
        -- unnest, not subscripts: an element of a text array is found by walking the array.
        FROM (SELECT k.scope, k.key, d.decision, d.rule
              FROM unnest(v_scope, v_key) WITH ORDINALITY AS k(scope, key, o)
              JOIN unnest(v_decisions, v_rules, v_allowed) WITH ORDINALITY AS d(decision, rule, allowed, i)
                ON d.i = (k.o - 1) / 4 + 1
              WHERE k.key IS NOT NULL AND NOT d.allowed
                AND (k.scope IN ('prefix', 'country') OR p_limits[array_position(c_scopes, k.scope)] > 0)
              UNION ALL
              SELECT 'rule', d.rule || ':' || d.decision, 'pass', NULL
              FROM unnest(v_decisions, v_rules) AS d(decision, rule) WHERE d.rule IS NOT NULL) x
        GROUP BY x.scope, x.key
    ), fresh AS (
        INSERT INTO sms.fraud_counts (scope, key, minute, requests, sends, limited)
        SELECT c.scope, c.key, v_minute, c.requests, c.sends, c.limited FROM counted c WHERE c.fresh
    )
    INSERT INTO sms.fraud_counts AS c (scope, key, minute, requests, sends, limited)
    SELECT x.scope, x.key, v_minute, x.requests, x.sends, x.limited FROM counted x
    WHERE NOT x.fresh
    ORDER BY x.scope, x.key
    ON CONFLICT (scope, key, minute) DO UPDATE
    SET requests = c.requests + EXCLUDED.requests, sends = c.sends + EXCLUDED.sends,
        limited = c.limited + EXCLUDED.limited;

    RETURN QUERY SELECT o, v_decisions[o], v_rules[o], v_details[o] FROM generate_series(1, n) o;
END;
$$;

-- Version 11's reservation (see there), its rows aggregated unsorted and returned without a statement.
CREATE OR REPLACE FUNCTION sms.reserve_sends(
    p_job_ids bigint[], p_tokens bigint[], p_phone_keys text[], p_channels text[], p_window float8,
    p_hour_cap int, p_day_cap int, p_rate float8, p_fraud_mode text DEFAULT 'off',
    p_fraud_limits int[] DEFAULT '{0,0,0,0}', p_trust_days int DEFAULT 0)
RETURNS TABLE (r_job_id bigint, r_verdict text, r_until timestamptz, r_detail text, r_slot float8, r_rule text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_until timestamptz;
    v_holder bigint;
    v_hour int;
    v_day int;
    v_owned bigint[];
    v_owned_ips inet[];
    v_owned_users text[];
    v_owned_attempts int[];
    v_ids bigint[] := '{}';
    v_verdicts text[] := '{}';
    v_untils timestamptz[] := '{}';
    v_details text[] := '{}';
    v_rules text[] := '{}';
    v_granted bigint[] := '{}';
    v_granted_keys text[] := '{}';     -- their phones and channels: the throttle rows' keys
    v_granted_channels text[] := '{}';
    v_holder_state text;
    v_holder_token bigint;
    v_holder_lease timestamptz;
    v_marker bigint;
    v_judged int[] := '{}';          -- the jobs the guard judges: their index, phone, IP and user
    v_judged_keys text[] := '{}';
    v_judged_ips inet[] := '{}';
    v_judged_users text[] := '{}';
    v_stopped bigint[] := '{}';
    v_first float8 := 0;
    v_paused text[];
    v_control sms.controls;
    v_pos int;
    v_decision record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330012))
    FROM (SELECT DISTINCT unnest(p_phone_keys) AS k ORDER BY 1) keys;

    -- Four arrays in one order (any): a sorted aggregate would sort each of them.
    SELECT array_agg(j.id), array_agg(j.client_ip), array_agg(j.user_ref), array_agg(j.attempts)
    INTO v_owned, v_owned_ips, v_owned_users, v_owned_attempts
    FROM (-- Claimed by this very transaction (the daemon claims and reserves in one): its update holds
          -- the row already, and a lock on the new version would be one more WAL record per job.
          SELECT j.id, j.client_ip, j.user_ref, j.attempts
          FROM unnest(p_job_ids, p_tokens) AS c(id, token)
          JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
          -- j.id = ANY: a primary key lookup whatever the statistics say (not a hash join over a scan).
          WHERE j.id = ANY (p_job_ids) AND j.xmin = pg_current_xact_id_if_assigned()::xid
          UNION ALL
          SELECT l.* FROM (
              SELECT j.id, j.client_ip, j.user_ref, j.attempts
              FROM unnest(p_job_ids, p_tokens) AS c(id, token)
              JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
              WHERE j.id = ANY (p_job_ids) AND j.xmin IS DISTINCT FROM pg_current_xact_id_if_assigned()::xid
              ORDER BY j.id
              FOR UPDATE OF j) l) j;

    -- Read after the locks: a pause committed before this point holds for every job of this batch.
    v_paused := sms.paused_channels();

    FOR i IN 1 .. COALESCE(array_length(p_job_ids, 1), 0) LOOP
        v_ids := v_ids || p_job_ids[i];
        v_untils := v_untils || NULL::timestamptz;
        v_details := v_details || NULL::text;
        v_rules := v_rules || NULL::text;
        IF v_owned IS NULL OR NOT p_job_ids[i] = ANY (v_owned) THEN
            v_verdicts := v_verdicts || 'lost'::text;
            CONTINUE;
        END IF;

        IF v_paused IS NOT NULL AND ('*' = ANY (v_paused) OR p_channels[i] = ANY (v_paused)) THEN
            v_control := sms.pause_of(p_channels[i]);
            v_verdicts := v_verdicts || 'paused'::text;
            v_details[i] := sms.pause_message(v_control);
            CONTINUE;
        END IF;

        v_until := NULL;
        v_holder := NULL;
        SELECT t.window_until, t.job_id, t.lease_token INTO v_until, v_holder, v_marker
        FROM sms.throttle t WHERE t.phone_key = p_phone_keys[i] AND t.channel = p_channels[i];
        IF v_until IS NOT NULL AND v_until > now() AND v_holder <> p_job_ids[i] THEN
            v_verdicts := v_verdicts || 'deferred'::text;
            v_untils[i] := v_until;
            CONTINUE;
        END IF;
        IF v_holder IS NOT NULL AND v_holder <> p_job_ids[i] AND v_marker IS NOT NULL THEN
            -- The window ran out, but the row is still the crash marker of the other job's grant: that
            -- job is running under the claim the grant was made for (its holder is calling, or died
            -- and its lease is not rescued yet, as when the database was away longer than the window).
            -- Taking the row would erase what its rescue must read, so this job waits for that lease.
            SELECT j.state, j.lease_token, j.locked_until INTO v_holder_state, v_holder_token, v_holder_lease
            FROM sms.jobs j WHERE j.id = v_holder;
            IF v_holder_state IS NOT DISTINCT FROM 'running' AND v_holder_token IS NOT DISTINCT FROM v_marker THEN
                v_verdicts := v_verdicts || 'deferred'::text;
                v_untils[i] := greatest(v_holder_lease, now()) + interval '1 second';
                CONTINUE;
            END IF;
        END IF;

        IF p_hour_cap > 0 OR p_day_cap > 0 THEN
            SELECT count(*) FILTER (WHERE s.sent_at > now() - interval '1 hour'), count(*)
            INTO v_hour, v_day
            FROM sms.jobs s
            WHERE s.phone_key = p_phone_keys[i] AND s.state = 'sent' AND s.sent_at > now() - interval '1 day';
            SELECT v_hour + count(*), v_day + count(*) INTO v_hour, v_day
            FROM sms.throttle t JOIN sms.jobs j ON j.id = t.job_id
            WHERE t.phone_key = p_phone_keys[i] AND t.job_id <> p_job_ids[i] AND j.state = 'running';
            IF p_hour_cap > 0 AND v_hour >= p_hour_cap THEN
                v_verdicts := v_verdicts || 'capped'::text;
                v_details[i] := format('per-phone cap reached: %s SMS in the last hour across all channels (caps.per_phone_hour = %s)', v_hour, p_hour_cap);
                CONTINUE;
            END IF;
            IF p_day_cap > 0 AND v_day >= p_day_cap THEN
                v_verdicts := v_verdicts || 'capped'::text;
                v_details[i] := format('per-phone cap reached: %s SMS in the last day across all channels (caps.per_phone_day = %s)', v_day, p_day_cap);
                CONTINUE;
            END IF;
        END IF;

        -- The window holds from the call's slot (now, without a rate schedule) plus one second: a call
        -- that ends within that second is covered, and its write-back need not move the window to the
        -- call's end (one row update per job fewer); a slower call's write-back does.
        -- The window, and the crash marker: job_id and lease_token say this claim was granted its call,
        -- so a rescue of this lease knows the SMS may have gone out (it used to be a second rewrite of
        -- the job row, sms.jobs.sending_at). Only a reservation writes throttle rows, always under the
        -- phone's advisory lock: a plain update or insert cannot race (no speculative insertion).
        IF v_until IS NOT NULL THEN
            UPDATE sms.throttle SET window_until = now() + make_interval(secs => p_window + 1), job_id = p_job_ids[i],
                                    lease_token = p_tokens[i]
            WHERE phone_key = p_phone_keys[i] AND channel = p_channels[i];
        END IF;
        -- (Retention deletes day-old windows without the phone's lock: the row read above may be gone.)
        IF v_until IS NULL OR NOT FOUND THEN
            INSERT INTO sms.throttle (phone_key, channel, window_until, job_id, lease_token)
            VALUES (p_phone_keys[i], p_channels[i], now() + make_interval(secs => p_window + 1), p_job_ids[i], p_tokens[i]);
        END IF;
        v_granted := v_granted || p_job_ids[i];
        v_granted_keys := v_granted_keys || p_phone_keys[i];
        v_granted_channels := v_granted_channels || p_channels[i];
        v_verdicts := v_verdicts || 'granted'::text;
        v_pos := array_position(v_owned, p_job_ids[i]);
        -- A job holding its own window was granted before and judged then (its call was held back by a
        -- pause, or released unsent at a shutdown, or the answer to its reservation was lost): judged
        -- again it would count twice.
        IF v_owned_attempts[v_pos] = 0 AND v_holder IS DISTINCT FROM p_job_ids[i] THEN
            v_judged := v_judged || i;
            v_judged_keys := v_judged_keys || p_phone_keys[i];
            v_judged_ips := v_judged_ips || v_owned_ips[v_pos];
            v_judged_users := v_judged_users || v_owned_users[v_pos];
        END IF;
    END LOOP;

    -- The fraud guard, last: only what would be sent is judged and counted.
    IF p_fraud_mode IN ('enforce', 'monitor') AND cardinality(v_judged) > 0 THEN
        FOR v_decision IN
            SELECT * FROM sms.fraud_decide(now(), v_judged_keys, v_judged_ips, v_judged_users,
                                           p_fraud_mode, p_fraud_limits, p_trust_days)
        LOOP
            i := v_judged[v_decision.r_index];
            v_rules[i] := v_decision.r_rule;
            v_details[i] := v_decision.r_detail;
            IF v_decision.r_decision = 'blocked' THEN
                v_verdicts[i] := 'fraud';
                v_stopped := v_stopped || p_job_ids[i];
            END IF;
        END LOOP;
        IF cardinality(v_stopped) > 0 THEN
            -- Stopped: the window taken above goes (a window held by another job would have deferred this one).
            DELETE FROM sms.throttle t
            USING unnest(v_granted, v_granted_keys, v_granted_channels) AS g(id, phone_key, channel)
            WHERE g.id = ANY (v_stopped) AND t.phone_key = g.phone_key AND t.channel = g.channel AND t.job_id = g.id;
            SELECT coalesce(array_agg(g.id ORDER BY g.n), '{}'), coalesce(array_agg(g.phone_key ORDER BY g.n), '{}'),
                   coalesce(array_agg(g.channel ORDER BY g.n), '{}')
            INTO v_granted, v_granted_keys, v_granted_channels
            FROM unnest(v_granted, v_granted_keys, v_granted_channels) WITH ORDINALITY AS g(id, phone_key, channel, n)
            WHERE NOT g.id = ANY (v_stopped);
        END IF;
    END IF;

    IF cardinality(v_granted) > 0 THEN
        IF p_rate > 0 THEN
            -- Slots from the schedule's next free one (or now, if it is in the past), 1/rate apart.
            -- clock_timestamp(), not now(): the slots are measured against the moment of this row's update.
            UPDATE sms.rate_schedule SET next_slot = greatest(next_slot, clock_timestamp())
                                                     + make_interval(secs => cardinality(v_granted) / p_rate)
            RETURNING extract(epoch FROM next_slot - clock_timestamp())::float8 - cardinality(v_granted) / p_rate
            INTO v_first;
            -- A call may wait for its slot: the phone's window must hold from the slot on, not from now.
            UPDATE sms.throttle t
            SET window_until = now() + make_interval(secs => p_window + 1 + greatest(0, v_first + (g.n - 1) / p_rate))
            FROM unnest(v_granted_keys, v_granted_channels) WITH ORDINALITY AS g(phone_key, channel, n)
            WHERE t.phone_key = g.phone_key AND t.channel = g.channel;
        END IF;
    END IF;

    -- The rows, without a statement.
    FOR i IN 1 .. cardinality(v_ids) LOOP
        r_job_id := v_ids[i];
        r_verdict := v_verdicts[i];
        r_until := v_untils[i];
        r_detail := v_details[i];
        r_slot := CASE WHEN v_verdicts[i] = 'granted'
                       THEN greatest(0, v_first + (array_position(v_granted, v_ids[i]) - 1) / NULLIF(p_rate, 0))
                  END;
        r_rule := v_rules[i];
        RETURN NEXT;
    END LOOP;
END;
$$;
