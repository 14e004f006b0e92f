-- Version 10: the fraud guard (SMS pumping). Its decisions are made in the reservation, in the same
-- transaction and under the same locks as the phone's window, so every daemon of the cluster sees one
-- count per client IP, user, number prefix and country, and two daemons together never let more
-- through than a limit. The anomaly side (baselines, blocks) runs in sms.fraud_evaluate, one daemon
-- of the cluster at a time, every fraud.evaluate_interval.
--
-- Every function here takes its clock as p_now: the daemon passes now(), `sms-bench`'s fraud
-- scenario a simulated day's clock, so the benchmark measures this very SQL.

-- When the producer reported that the code was entered (sms.mark_verified).
ALTER TABLE sms.jobs ADD COLUMN verified_at timestamptz NULL;

-- A number's prefix (the number without its last four digits, with its country code) and country,
-- from its phone_key ('+CC national'): the one definition, used by the guard and by mark_verified.
CREATE FUNCTION sms.phone_prefix(p_phone_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT left(p_phone_key, -4) $$;

CREATE FUNCTION sms.phone_country(p_phone_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT split_part(p_phone_key, ' ', 1) $$;

-- A client's key: its IPv4 address, or its IPv6 /64 (one subscriber's allocation: rotating addresses
-- inside it is free, so counting single IPv6 addresses would limit nothing). An IPv4-mapped address
-- (::ffff:a.b.c.d, what dual-stack servers report for IPv4 clients) is its IPv4 address: as a /64 every
-- IPv4 client would be one.
CREATE FUNCTION sms.client_key(p_ip inet) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN family(p_ip) = 4 THEN host(p_ip)
                WHEN p_ip << '::ffff:0:0/96'::inet THEN host('0.0.0.0'::inet + (host(p_ip)::inet - '::ffff:0:0'::inet))
                ELSE network(set_masklen(p_ip, 64))::text END
$$;

-- Per-minute counters of the guard: per scope ('ip', 'user', 'prefix', 'country'; 'rule' counts the
-- decisions per rule, key '<rule>:<decision>') and key. requests: jobs the guard decided on; sends:
-- of them let through; limited: of them stopped by a rolling limit. Only the reservation writes them
-- (verifications have a table of their own: a producer's transaction never holds a row the reservation
-- needs).
-- UNLOGGED: written for every job, they cost no WAL. A crash of PostgreSQL (not a clean restart)
-- empties them: the rolling hours start again from zero, the blocks and baselines (logged) stay.
-- By minute, a BRIN index (rows arrive in minute order; next to nothing to maintain per row): the
-- anomaly side reads the last minutes, sms.fraud_prune deletes the old ones every 5 minutes.
CREATE UNLOGGED TABLE sms.fraud_counts (
    scope    text NOT NULL,
    key      text NOT NULL,
    minute   timestamptz NOT NULL,
    requests int NOT NULL DEFAULT 0,
    sends    int NOT NULL DEFAULT 0,
    limited  int NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, minute)
) WITH (fillfactor = 80);
CREATE INDEX fraud_counts_minute_idx ON sms.fraud_counts USING brin (minute) WITH (pages_per_range = 16, autosummarize = on);

-- Codes reported entered (sms.mark_verified) per prefix and country and minute. UNLOGGED like the counters.
CREATE UNLOGGED TABLE sms.fraud_verifications (
    scope    text NOT NULL CHECK (scope IN ('prefix', 'country')),
    key      text NOT NULL,
    minute   timestamptz NOT NULL,
    verified int NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, minute)
);
CREATE INDEX fraud_verifications_minute_idx ON sms.fraud_verifications USING brin (minute) WITH (autosummarize = on);

-- Per prefix and country: sends and verifications per hour, exponentially weighted over
-- fraud.baseline_hours, folded in minute by minute by sms.fraud_evaluate (up to folded_until).
CREATE TABLE sms.fraud_baselines (
    scope           text NOT NULL,
    key             text NOT NULL,
    first_seen      timestamptz NOT NULL,
    folded_until    timestamptz NOT NULL,
    hourly_sends    float8 NOT NULL,
    hourly_verified float8 NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX fraud_baselines_folded_idx ON sms.fraud_baselines (folded_until);

-- Prefixes and countries whose traffic was far above its baseline with almost no codes verified.
-- An operator's unblock ends a block at once (until = now()) and keeps the evaluator from blocking
-- the key again for one block time.
CREATE TABLE sms.fraud_blocks (
    scope      text NOT NULL CHECK (scope IN ('prefix', 'country')),
    key        text NOT NULL,
    since      timestamptz NOT NULL,
    until      timestamptz NOT NULL,
    reason     text NOT NULL,
    cleared_by text NULL,
    cleared_at timestamptz NULL,
    PRIMARY KEY (scope, key)
);
COMMENT ON TABLE sms.fraud_blocks IS 'Fraud guard anomaly blocks; in force while until > now(). sms-dispatcher fraud list|unblock.';

-- Numbers starting with one of these ('+' and digits, e.g. +4470090) pass the guard and are not
-- counted: test numbers, known good ranges.
CREATE TABLE sms.fraud_allowed (
    prefix   text PRIMARY KEY CHECK (prefix ~ '^\+[1-9][0-9]{0,14}$'),
    note     text NULL,
    added_by text NOT NULL DEFAULT session_user,
    added_at timestamptz NOT NULL DEFAULT now()
);

-- user_refs that verified a code lately: a known user passes an anomaly block (not the limits).
CREATE TABLE sms.fraud_trusted (
    user_ref    text PRIMARY KEY,
    verified_at timestamptz NOT NULL
);
CREATE INDEX fraud_trusted_verified_idx ON sms.fraud_trusted (verified_at);

-- Up to where the baselines are folded, when the anomaly side last evaluated, and when the guard's
-- state was last pruned (one row).
CREATE TABLE sms.fraud_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    folded_until timestamptz NULL,
    evaluated_at timestamptz NULL,
    pruned_at    timestamptz NULL
);
INSERT INTO sms.fraud_state DEFAULT VALUES;

-- The guard's decision for each job of a batch (in array order, which is the order the limits are
-- consumed in). p_limits: per_ip_hour, per_user_hour, per_prefix_hour, per_country_hour (0: none).
-- p_mode: 'enforce' or 'monitor' (decide and count, block nothing). Decisions: 'pass', 'allowed'
-- (allow-list: not counted), 'blocked', 'flagged' (monitor mode's would-be block: sent and counted).
-- Takes an advisory lock per limited key, in one order, after the caller's phone locks (also in one
-- order): a second daemon deciding on the same IP waits for this transaction and then sees its count.
-- The common batch (no key near its limit, no block, no allow-listed number) is decided set-based;
-- the job-by-job loop runs only for a batch where some job may be stopped.
CREATE FUNCTION sms.fraud_decide(
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
    s int;
BEGIN
    IF n = 0 OR p_mode NOT IN ('enforce', 'monitor') THEN
        RETURN;
    END IF;
    SELECT array_agg(x.scope ORDER BY j.o, x.s), array_agg(x.key ORDER BY j.o, x.s) INTO v_scope, v_key
    FROM unnest(p_phone_keys, p_ips, p_users) WITH ORDINALITY AS j(pk, ip, u, o)
    CROSS JOIN LATERAL (VALUES (1, 'ip', sms.client_key(j.ip)), (2, 'user', left(NULLIF(j.u, ''), 200)),
                               (3, 'prefix', sms.phone_prefix(j.pk)), (4, 'country', sms.phone_country(j.pk))
                       ) AS x(s, scope, key);

    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330013))
    FROM (SELECT DISTINCT x.scope || '|' || x.key AS k
          FROM unnest(v_scope, v_key) AS x(scope, key)
          WHERE x.key IS NOT NULL AND p_limits[array_position(c_scopes, x.scope)] > 0
          ORDER BY 1) keys;

    -- Each limited key's sends in the window (through the primary key), whether the whole batch fits
    -- under every limit even if all of it went, and which keys have a row for this minute already.
    SELECT COALESCE(jsonb_object_agg(k.scope || '|' || k.key, u.used) FILTER (WHERE u.used > 0), '{}'),
           COALESCE(bool_and(COALESCE(u.used, 0) + k.n <= p_limits[array_position(c_scopes, k.scope)]), true),
           array_agg(k.scope || '|' || k.key) FILTER (WHERE u.current)
    INTO v_used, v_fits, v_current
    FROM (SELECT x.scope, x.key, count(*) AS n
          FROM unnest(v_scope, v_key) AS x(scope, key)
          WHERE x.key IS NOT NULL AND p_limits[array_position(c_scopes, x.scope)] > 0
          GROUP BY x.scope, x.key) k
    LEFT JOIN LATERAL (SELECT sum(c.sends)::int AS used, bool_or(c.minute = v_minute) AS current
                       FROM sms.fraud_counts c
                       WHERE c.scope = k.scope AND c.key = k.key AND c.minute >= v_since) u ON true;

    -- Blocks are rare: the batch's keys are matched only while one is in force.
    IF EXISTS (SELECT 1 FROM sms.fraud_blocks b WHERE b.until > p_now) THEN
        SELECT jsonb_object_agg(b.scope || '|' || b.key,
                                b.reason || ' (blocked until ' || to_char(b.until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC)')
        INTO v_blocks
        FROM sms.fraud_blocks b
        WHERE b.until > p_now
          AND (b.scope, b.key) IN (SELECT x.scope, x.key FROM unnest(v_scope, v_key) AS x(scope, key)
                                   WHERE x.scope IN ('prefix', 'country'));
    END IF;

    SELECT array_agg(a.prefix) INTO v_allow FROM sms.fraud_allowed a
    WHERE EXISTS (SELECT 1 FROM unnest(p_phone_keys) k WHERE starts_with(replace(k, ' ', ''), a.prefix));

    IF v_fits AND v_blocks IS NULL AND v_allow IS NULL THEN
        v_allowed := array_fill(false, ARRAY[n]);
        v_decisions := array_fill('pass'::text, ARRAY[n]);
        v_rules := array_fill(NULL::text, ARRAY[n]);
        v_details := array_fill(NULL::text, ARRAY[n]);
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

-- Codes reported entered: counted for their prefix and country in p_now's minute, and their users
-- remembered as known (fraud.trust_verified_days).
CREATE FUNCTION sms.fraud_verified(p_now timestamptz, p_phone_keys text[], p_users text[])
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO sms.fraud_verifications AS c (scope, key, minute, verified)
    SELECT x.scope, x.key, date_trunc('minute', p_now), count(*)
    FROM (SELECT 'prefix' AS scope, sms.phone_prefix(k) AS key FROM unnest(p_phone_keys) k
          UNION ALL
          SELECT 'country', sms.phone_country(k) FROM unnest(p_phone_keys) k) x
    GROUP BY x.scope, x.key
    ORDER BY x.scope, x.key
    ON CONFLICT (scope, key, minute) DO UPDATE SET verified = c.verified + EXCLUDED.verified;
    INSERT INTO sms.fraud_trusted AS t (user_ref, verified_at)
    SELECT DISTINCT left(u, 200), p_now FROM unnest(p_users) u WHERE NULLIF(u, '') IS NOT NULL
    ORDER BY 1
    ON CONFLICT (user_ref) DO UPDATE SET verified_at = greatest(t.verified_at, EXCLUDED.verified_at);
$$;

-- The producer reports that a job's code was entered. True the first time for a sent job; false if
-- the job is unknown, not sent, or already reported.
CREATE FUNCTION sms.mark_verified(job_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_phone_key text;
    v_user text;
BEGIN
    UPDATE sms.jobs j SET verified_at = now()
    WHERE j.id = mark_verified.job_id AND j.state = 'sent' AND j.verified_at IS NULL
    RETURNING j.phone_key, j.user_ref INTO v_phone_key, v_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sms.fraud_verified(now(), ARRAY[v_phone_key], ARRAY[v_user]);
    RETURN true;
END;
$$;

-- The anomaly side, one evaluator of the cluster per p_interval seconds (a daemon whose round comes
-- sooner after another's, or while another's runs, returns nothing). Folds the closed minutes into the
-- baselines, then blocks (or keeps blocked) each prefix and country with a history of p_baseline_hours
-- whose last 10 minutes brought at least p_min_requests requests, more than p_factor times its
-- baseline, with fewer than p_max_verified of them verified while its baseline shows at least twice
-- that share verified (a producer that never calls mark_verified gets no anomaly blocks: absent
-- verifications would mean nothing). Returns the blocks it made or extended (r_new: a block that
-- starts now). The guard's old state is pruned by sms.fraud_prune, in a transaction of its own.
CREATE FUNCTION sms.fraud_evaluate(
    p_now timestamptz, p_factor float8, p_min_requests int, p_max_verified float8, p_block_minutes float8,
    p_baseline_hours float8, p_interval float8)
RETURNS TABLE (r_scope text, r_key text, r_since timestamptz, r_until timestamptz, r_reason text, r_new boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_upto timestamptz := date_trunc('minute', p_now);
    v_from timestamptz;
    v_evaluated timestamptz;
    -- Per minute, for a time constant of p_baseline_hours.
    v_decay float8 := exp(-1.0 / (60.0 * greatest(p_baseline_hours, 0.1)));
    v_block interval := make_interval(secs => p_block_minutes * 60);
BEGIN
    IF NOT pg_try_advisory_xact_lock(7212330014) THEN
        RETURN;
    END IF;
    SELECT f.folded_until, f.evaluated_at INTO v_from, v_evaluated FROM sms.fraud_state f FOR UPDATE;
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

-- The guard's retention, at most every 5 minutes (a round that comes sooner deletes nothing), in
-- bounded deletes: counters and verifications past every window (the rolling hour, the 10 minutes,
-- the folding above), baselines decayed to nothing, blocks a week over, users no longer trusted
-- (p_trust_days 0: trust is off, the users are kept for when it is on again). Runs whatever the
-- guard's mode: verifications are counted even while it is off. Returns the rows deleted.
CREATE FUNCTION sms.fraud_prune(p_now timestamptz, p_baseline_hours float8, p_trust_days int)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    v_deleted int := 0;
    v_n int;
BEGIN
    UPDATE sms.fraud_state SET pruned_at = p_now
    WHERE pruned_at IS NULL OR pruned_at <= p_now - interval '5 minutes' OR pruned_at > p_now;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    DELETE FROM sms.fraud_counts WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM sms.fraud_counts WHERE minute < p_now - interval '62 minutes' LIMIT 200000));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    DELETE FROM sms.fraud_verifications WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM sms.fraud_verifications WHERE minute < p_now - interval '62 minutes' LIMIT 200000));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    DELETE FROM sms.fraud_baselines WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM sms.fraud_baselines
        WHERE folded_until < p_now - make_interval(secs => 30 * p_baseline_hours * 3600) LIMIT 50000));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    DELETE FROM sms.fraud_blocks WHERE until < p_now - interval '7 days';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    IF p_trust_days > 0 THEN
        DELETE FROM sms.fraud_trusted WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM sms.fraud_trusted WHERE verified_at < p_now - make_interval(days => p_trust_days) LIMIT 50000));
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_deleted := v_deleted + v_n;
    END IF;
    RETURN v_deleted;
END;
$$;

-- The reservation (version 10) asks the fraud guard about each job it would grant, first attempts only
-- (a retry was judged on its first) and once (not a job holding its own window: granted before). p_fraud_mode: 'enforce', 'monitor' or 'off'; p_fraud_limits as in
-- sms.fraud_decide. A stopped job's verdict is 'fraud' (r_detail: 'fraud guard: <rule>: ...'): no window
-- taken, no attempt used, no call; r_rule names the rule for a stopped or (monitor) flagged job.
DROP FUNCTION sms.reserve_sends(bigint[], bigint[], text[], text[], float8, int, int, float8);
CREATE FUNCTION sms.reserve_sends(
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

    SELECT array_agg(j.id ORDER BY j.id), array_agg(j.client_ip ORDER BY j.id), array_agg(j.user_ref ORDER BY j.id),
           array_agg(j.attempts ORDER BY j.id)
    INTO v_owned, v_owned_ips, v_owned_users, v_owned_attempts
    FROM (SELECT j.id, j.client_ip, j.user_ref, j.attempts
          FROM unnest(p_job_ids, p_tokens) AS c(id, token)
          JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
          ORDER BY j.id
          FOR UPDATE OF j) j;

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
        SELECT t.window_until, t.job_id INTO v_until, v_holder
        FROM sms.throttle t WHERE t.phone_key = p_phone_keys[i] AND t.channel = p_channels[i];
        IF v_until IS NOT NULL AND v_until > now() AND v_holder <> p_job_ids[i] THEN
            v_verdicts := v_verdicts || 'deferred'::text;
            v_untils[i] := v_until;
            CONTINUE;
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

        INSERT INTO sms.throttle AS t (phone_key, channel, window_until, job_id)
        VALUES (p_phone_keys[i], p_channels[i], now() + make_interval(secs => p_window), p_job_ids[i])
        ON CONFLICT (phone_key, channel)
        DO UPDATE SET window_until = EXCLUDED.window_until, job_id = EXCLUDED.job_id;
        v_granted := v_granted || p_job_ids[i];
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
            DELETE FROM sms.throttle WHERE job_id = ANY (v_stopped);
            v_granted := ARRAY(SELECT g FROM unnest(v_granted) g WHERE NOT g = ANY (v_stopped));
        END IF;
    END IF;

    IF cardinality(v_granted) > 0 THEN
        UPDATE sms.jobs SET sending_at = now() WHERE id = ANY (v_granted);
        IF p_rate > 0 THEN
            -- Slots from the schedule's next free one (or now, if it is in the past), 1/rate apart.
            -- clock_timestamp(), not now(): the slots are measured against the moment of this row's update.
            UPDATE sms.rate_schedule SET next_slot = greatest(next_slot, clock_timestamp())
                                                     + make_interval(secs => cardinality(v_granted) / p_rate)
            RETURNING extract(epoch FROM next_slot - clock_timestamp())::float8 - cardinality(v_granted) / p_rate
            INTO v_first;
            -- A call may wait for its slot: the phone's window must hold from the slot on, not from now.
            UPDATE sms.throttle t
            SET window_until = now() + make_interval(secs => p_window
                               + greatest(0, v_first + (array_position(v_granted, t.job_id) - 1) / p_rate))
            WHERE t.job_id = ANY (v_granted);
        END IF;
    END IF;

    RETURN QUERY
    SELECT v_ids[n], v_verdicts[n], v_untils[n], v_details[n],
           CASE WHEN v_verdicts[n] = 'granted'
                THEN greatest(0, v_first + (array_position(v_granted, v_ids[n]) - 1) / NULLIF(p_rate, 0))
           END,
           v_rules[n]
    FROM generate_series(1, cardinality(v_ids)) n;
END;
$$;

-- Operators: end a block now (and keep the evaluator off the key for one block time); allow or
-- disallow a prefix. Keys are matched without spaces: '+86 1380013' and '+861380013' are one.
CREATE FUNCTION sms.fraud_unblock(p_key text)
RETURNS int
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count int;
BEGIN
    UPDATE sms.fraud_blocks SET until = least(until, now()), cleared_by = session_user, cleared_at = now()
    WHERE replace(key, ' ', '') = replace(p_key, ' ', '') AND until > now();
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

CREATE FUNCTION sms.fraud_allow(p_prefix text, p_note text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_prefix text := replace(p_prefix, ' ', '');
BEGIN
    IF v_prefix !~ '^\+[1-9][0-9]{0,14}$' THEN
        RAISE EXCEPTION 'fraud allow: "%" is not a number prefix: + and the country code, then digits (e.g. +4470090)',
            left(p_prefix, 40) USING ERRCODE = '22023';
    END IF;
    INSERT INTO sms.fraud_allowed AS a (prefix, note) VALUES (v_prefix, p_note)
    ON CONFLICT (prefix) DO UPDATE SET note = COALESCE(EXCLUDED.note, a.note);
    RETURN v_prefix;
END;
$$;

CREATE FUNCTION sms.fraud_disallow(p_prefix text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM sms.fraud_allowed WHERE prefix = replace(p_prefix, ' ', '') RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;

REVOKE ALL ON FUNCTION sms.mark_verified(bigint), sms.fraud_unblock(text), sms.fraud_allow(text, text),
                       sms.fraud_disallow(text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION sms.mark_verified(bigint) TO sms_producer;
GRANT SELECT ON sms.fraud_blocks, sms.fraud_allowed, sms.fraud_counts, sms.fraud_verifications, sms.fraud_baselines
    TO sms_monitor;
GRANT EXECUTE ON FUNCTION sms.fraud_unblock(text), sms.fraud_allow(text, text), sms.fraud_disallow(text)
    TO sms_operator;
GRANT EXECUTE ON FUNCTION sms.reserve_sends(bigint[], bigint[], text[], text[], float8, int, int, float8, text, int[], int),
                          sms.fraud_decide(timestamptz, text[], inet[], text[], text, int[], int),
                          sms.fraud_evaluate(timestamptz, float8, int, float8, float8, float8, float8),
                          sms.fraud_prune(timestamptz, float8, int)
    TO sms_dispatcher;
GRANT SELECT, INSERT, UPDATE, DELETE ON sms.fraud_counts, sms.fraud_baselines, sms.fraud_blocks, sms.fraud_trusted
    TO sms_dispatcher;
GRANT SELECT, DELETE ON sms.fraud_verifications TO sms_dispatcher;
GRANT SELECT ON sms.fraud_allowed TO sms_dispatcher;
GRANT SELECT, UPDATE ON sms.fraud_state TO sms_dispatcher;
-- Producers may read whether they reported a job verified.
GRANT SELECT (verified_at) ON sms.jobs TO sms_producer;
