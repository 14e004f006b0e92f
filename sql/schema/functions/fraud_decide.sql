-- The fraud guard's per-job decision, for the reservation: counts each first attempt against the
-- limits of its client IP, user, prefix and country (the rolling hour), and stops it if a limit is
-- reached or an anomaly block covers it, unless allowed or trusted (monitor mode: counts and flags,
-- stops nothing). Takes no locks of its own: its caller, the reservation, holds the row locks of
-- every limited key of the jobs it asks about (sms.key_locks) until it commits.
CREATE OR REPLACE FUNCTION sms.fraud_decide(p_now timestamp with time zone, p_phone_keys text[], p_ips inet[], p_users text[], p_mode text, p_limits integer[], p_trust_days integer) RETURNS TABLE(r_index integer, r_decision text, r_rule text, r_detail text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    n int := COALESCE(cardinality(p_phone_keys), 0);
    c_scopes constant text[] := ARRAY['ip', 'user', 'prefix', 'country'];
    c_rules constant text[] := ARRAY['per_ip_hour', 'per_user_hour', 'per_prefix_hour', 'per_country_hour'];
    c_labels constant text[] := ARRAY['client_ip', 'user_ref', 'prefix', 'country'];
    v_minute timestamptz := date_trunc('minute', p_now);
    v_since timestamptz := date_trunc('minute', p_now - interval '1 hour');
    v_scope text[];
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
    v_scope := '{}';
    v_key := '{}';
    FOR i IN 1 .. n LOOP
        v_scope := v_scope || c_scopes;
        v_key := v_key || ARRAY[sms.client_key(p_ips[i]), left(NULLIF(p_users[i], ''), 200),
                                sms.phone_prefix(p_phone_keys[i]), sms.phone_country(p_phone_keys[i])];
    END LOOP;

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
        INSERT INTO sms.fraud_counts AS c (scope, key, minute, requests, sends, limited)
        SELECT x.scope, x.key, v_minute, count(*), count(*), 0
        FROM unnest(v_scope, v_key) WITH ORDINALITY AS x(scope, key, o)
        WHERE x.key IS NOT NULL AND (x.scope IN ('prefix', 'country') OR p_limits[(x.o - 1) % 4 + 1] > 0)
        GROUP BY x.scope, x.key
        ORDER BY x.scope, x.key
        ON CONFLICT (scope, key, minute) DO UPDATE
        SET requests = c.requests + EXCLUDED.requests, sends = c.sends + EXCLUDED.sends;
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

            IF v_blocks IS NOT NULL AND NOT COALESCE(left(p_users[i], 200) = ANY (v_trusted), false) THEN
                FOR s IN 3 .. 4 LOOP
                    v_k := v_key[(i - 1) * 4 + s];
                    v_block := v_blocks ->> (c_scopes[s] || '|' || v_k);
                    IF v_block IS NOT NULL THEN
                        v_rule := c_scopes[s] || '_block';
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

    -- The counters (see version 10). An ip or user key without a row for this minute gets a plain
    -- insert: only a decider holding that key's lock (the caller's, on sms.key_locks) writes such rows.
    WITH counted AS (
        SELECT x.scope, x.key, count(*) AS requests, count(*) FILTER (WHERE x.decision <> 'blocked') AS sends,
               count(*) FILTER (WHERE x.decision = 'blocked' AND x.rule LIKE 'per\_%') AS limited,
               x.scope IN ('ip', 'user') AND NOT COALESCE(x.scope || '|' || x.key = ANY (v_current), false) AS fresh
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

GRANT ALL ON FUNCTION sms.fraud_decide(p_now timestamp with time zone, p_phone_keys text[], p_ips inet[], p_users text[], p_mode text, p_limits integer[], p_trust_days integer) TO sms_dispatcher;
