-- The reservation: for each claimed job, in claim order, the cluster-wide decision to call GenAuth
-- now (`granted`, with its rate slot), later (`deferred`: the phone's window, the caps, a busy key),
-- never (`superseded`, `rejected` by the fraud guard) or not at all (`lost`: the claim no longer holds
-- the job). One transaction per batch, so the rate schedule, the phone windows and the guard's counts
-- agree across every daemon.
--
-- Locks: each job's row (an earlier claim's rows are locked here; this transaction's own claim holds its
-- rows already), then its keys' rows in sms.key_locks (its phone, and for a first attempt the fraud
-- guard's limited keys), all without waiting. A job whose row or key another session holds is not
-- decided now: it is deferred by half a second (`deferred`, r_detail 'busy: ...'), and the rest of the
-- batch goes on. Only daemons hold those rows, for the length of a reservation.
--
-- The proof window (p_proof_margin: seconds a retry needs to reach GenAuth): a job whose earlier call
-- may have gone out and whose proof window is still open is not capped (its retry sends nothing if
-- that call went out, and is this job's one SMS if it did not).
CREATE OR REPLACE FUNCTION sms.reserve_sends(p_job_ids bigint[], p_tokens bigint[], p_phone_keys text[], p_channels text[], p_window double precision, p_hour_cap integer, p_day_cap integer, p_rate double precision, p_fraud_mode text DEFAULT 'off'::text, p_fraud_limits integer[] DEFAULT '{0,0,0,0}'::integer[], p_trust_days integer DEFAULT 0, p_proof_margin double precision DEFAULT 2) RETURNS TABLE(r_job_id bigint, r_verdict text, r_until timestamp with time zone, r_detail text, r_slot double precision, r_rule text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    c_scopes constant text[] := ARRAY['ip', 'user', 'prefix', 'country'];
    c_busy constant interval := interval '0.5 seconds';
    i int;
    s int;
    v_until timestamptz;
    v_holder bigint;
    v_hour int;
    v_day int;
    v_owned bigint[];
    v_owned_ips inet[];
    v_owned_users text[];
    v_owned_attempts int[];
    v_owned_proof timestamptz[];
    v_owned_uncertain boolean[];
    v_held bigint[];
    v_keys text[] := '{}';
    v_key_jobs int[] := '{}';
    v_got text[];
    v_busy int[] := '{}';
    v_ids bigint[] := '{}';
    v_verdicts text[] := '{}';
    v_untils timestamptz[] := '{}';
    v_details text[] := '{}';
    v_rules text[] := '{}';
    v_granted bigint[] := '{}';
    v_granted_keys text[] := '{}';
    v_granted_channels text[] := '{}';
    v_holder_state text;
    v_holder_token bigint;
    v_holder_lease timestamptz;
    v_marker bigint;
    v_judged int[] := '{}';
    v_judged_keys text[] := '{}';
    v_judged_ips inet[] := '{}';
    v_judged_users text[] := '{}';
    v_stopped bigint[] := '{}';
    v_first float8 := 0;
    v_paused text[];
    v_control sms.controls;
    v_pos int;
    v_decision record;
    v_k text;
BEGIN
    -- The jobs still running under their claims, their rows locked: this transaction's own claim holds
    -- its rows already (a lock on the new version would be one more WAL record per job); an earlier
    -- claim's are locked here, skipping a row another session holds (a rescue looking at it).
    SELECT array_agg(j.id), array_agg(j.client_ip), array_agg(j.user_ref), array_agg(j.attempts),
           array_agg(j.proof_until), array_agg(j.uncertain)
    INTO v_owned, v_owned_ips, v_owned_users, v_owned_attempts, v_owned_proof, v_owned_uncertain
    FROM (SELECT j.id, j.client_ip, j.user_ref, j.attempts, j.proof_until, j.uncertain
          FROM unnest(p_job_ids, p_tokens) AS c(id, token)
          JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
          WHERE j.id = ANY (p_job_ids) AND j.xmin = pg_current_xact_id_if_assigned()::xid
          UNION ALL
          SELECT l.* FROM (
              SELECT j.id, j.client_ip, j.user_ref, j.attempts, j.proof_until, j.uncertain
              FROM unnest(p_job_ids, p_tokens) AS c(id, token)
              JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
              WHERE j.id = ANY (p_job_ids) AND j.xmin IS DISTINCT FROM pg_current_xact_id_if_assigned()::xid
              ORDER BY j.id
              FOR UPDATE OF j SKIP LOCKED) l) j;
    IF COALESCE(cardinality(v_owned), 0) < cardinality(p_job_ids) THEN
        -- Not locked: still ours but held by another session for a moment (busy), or lost.
        SELECT array_agg(j.id) INTO v_held
        FROM unnest(p_job_ids, p_tokens) AS c(id, token)
        JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
        WHERE j.id = ANY (p_job_ids) AND NOT j.id = ANY (COALESCE(v_owned, '{}'));
    END IF;

    -- Their keys: the phone's, and for a first attempt under the fraud guard its limited keys. Inserted
    -- when new (in key order: two reservations inserting the same new keys never wait on each other in
    -- a cycle), then locked without waiting.
    FOR i IN 1 .. COALESCE(cardinality(p_job_ids), 0) LOOP
        v_pos := array_position(v_owned, p_job_ids[i]);
        CONTINUE WHEN v_pos IS NULL;
        v_keys := v_keys || ('phone|' || p_phone_keys[i]);
        v_key_jobs := v_key_jobs || i;
        IF p_fraud_mode IN ('enforce', 'monitor') AND v_owned_attempts[v_pos] = 0 THEN
            FOR s IN 1 .. 4 LOOP
                CONTINUE WHEN COALESCE(p_fraud_limits[s], 0) <= 0;
                v_k := CASE s WHEN 1 THEN sms.client_key(v_owned_ips[v_pos])
                              WHEN 2 THEN left(NULLIF(v_owned_users[v_pos], ''), 200)
                              WHEN 3 THEN sms.phone_prefix(p_phone_keys[i])
                              ELSE sms.phone_country(p_phone_keys[i]) END;
                CONTINUE WHEN v_k IS NULL;
                v_keys := v_keys || (c_scopes[s] || '|' || v_k);
                v_key_jobs := v_key_jobs || i;
            END LOOP;
        END IF;
    END LOOP;
    IF cardinality(v_keys) > 0 THEN
        INSERT INTO sms.key_locks (key) SELECT DISTINCT k FROM unnest(v_keys) k ORDER BY 1 ON CONFLICT DO NOTHING;
        SELECT array_agg(l.key) INTO v_got
        FROM (SELECT l.key FROM sms.key_locks l WHERE l.key = ANY (v_keys) ORDER BY l.key FOR UPDATE SKIP LOCKED) l;
        IF COALESCE(cardinality(v_got), 0) < (SELECT count(DISTINCT k) FROM unnest(v_keys) k) THEN
            SELECT array_agg(DISTINCT k.i) INTO v_busy
            FROM unnest(v_key_jobs, v_keys) AS k(i, key)
            WHERE NOT k.key = ANY (COALESCE(v_got, '{}'));
        END IF;
    END IF;

    -- Read after the locks: a pause committed before this point holds for every job of this batch.
    v_paused := sms.paused_channels();

    FOR i IN 1 .. COALESCE(array_length(p_job_ids, 1), 0) LOOP
        v_ids := v_ids || p_job_ids[i];
        v_untils := v_untils || NULL::timestamptz;
        v_details := v_details || NULL::text;
        v_rules := v_rules || NULL::text;
        v_pos := array_position(v_owned, p_job_ids[i]);
        IF v_pos IS NULL OR i = ANY (v_busy) THEN
            IF v_pos IS NOT NULL OR p_job_ids[i] = ANY (COALESCE(v_held, '{}')) THEN
                v_verdicts := v_verdicts || 'deferred'::text;
                v_untils[i] := now() + c_busy;
                v_details[i] := 'busy: another session holds this job or its phone for a moment';
            ELSE
                v_verdicts := v_verdicts || 'lost'::text;
            END IF;
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
            -- The window ran out, but the row is still the crash marker of the other job's grant (see
            -- version 11): this job waits for that lease.
            SELECT j.state, j.lease_token, j.locked_until INTO v_holder_state, v_holder_token, v_holder_lease
            FROM sms.jobs j WHERE j.id = v_holder;
            IF v_holder_state IS NOT DISTINCT FROM 'running' AND v_holder_token IS NOT DISTINCT FROM v_marker THEN
                v_verdicts := v_verdicts || 'deferred'::text;
                v_untils[i] := greatest(v_holder_lease, now()) + interval '1 second';
                CONTINUE;
            END IF;
        END IF;

        -- A retry whose proof window is open is not a new SMS: not capped.
        IF (p_hour_cap > 0 OR p_day_cap > 0)
           AND NOT (v_owned_uncertain[v_pos]
                    AND COALESCE(v_owned_proof[v_pos] > now() + make_interval(secs => p_proof_margin), false)) THEN
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

        -- The window and the crash marker (see version 11), under the phone's key lock: a plain update
        -- or insert cannot race.
        IF v_until IS NOT NULL THEN
            UPDATE sms.throttle SET window_until = now() + make_interval(secs => p_window + 1), job_id = p_job_ids[i],
                                    lease_token = p_tokens[i]
            WHERE phone_key = p_phone_keys[i] AND channel = p_channels[i];
        END IF;
        IF v_until IS NULL OR NOT FOUND THEN
            INSERT INTO sms.throttle (phone_key, channel, window_until, job_id, lease_token)
            VALUES (p_phone_keys[i], p_channels[i], now() + make_interval(secs => p_window + 1), p_job_ids[i], p_tokens[i]);
        END IF;
        v_granted := v_granted || p_job_ids[i];
        v_granted_keys := v_granted_keys || p_phone_keys[i];
        v_granted_channels := v_granted_channels || p_channels[i];
        v_verdicts := v_verdicts || 'granted'::text;
        IF v_owned_attempts[v_pos] = 0 AND v_holder IS DISTINCT FROM p_job_ids[i] THEN
            v_judged := v_judged || i;
            v_judged_keys := v_judged_keys || p_phone_keys[i];
            v_judged_ips := v_judged_ips || v_owned_ips[v_pos];
            v_judged_users := v_judged_users || v_owned_users[v_pos];
        END IF;
    END LOOP;

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

    IF cardinality(v_granted) > 0 AND p_rate > 0 THEN
        UPDATE sms.rate_schedule SET next_slot = greatest(next_slot, clock_timestamp())
                                                 + make_interval(secs => cardinality(v_granted) / p_rate)
        RETURNING extract(epoch FROM next_slot - clock_timestamp())::float8 - cardinality(v_granted) / p_rate
        INTO v_first;
        UPDATE sms.throttle t
        SET window_until = now() + make_interval(secs => p_window + 1 + greatest(0, v_first + (g.n - 1) / p_rate))
        FROM unnest(v_granted_keys, v_granted_channels) WITH ORDINALITY AS g(phone_key, channel, n)
        WHERE t.phone_key = g.phone_key AND t.channel = g.channel;
    END IF;

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

GRANT ALL ON FUNCTION sms.reserve_sends(p_job_ids bigint[], p_tokens bigint[], p_phone_keys text[], p_channels text[], p_window double precision, p_hour_cap integer, p_day_cap integer, p_rate double precision, p_fraud_mode text, p_fraud_limits integer[], p_trust_days integer, p_proof_margin double precision) TO sms_dispatcher;
