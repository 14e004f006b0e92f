-- Version 14: the truth over time, and neighbours on the shared database (issue 26).
--
-- * The proof window. A call whose answer never came may have gone out; GenAuth can prove it (its
--   "sent too frequently" answer to a retry) only while its one-SMS-per-phone-per-channel window lasts,
--   a minute from when it accepted the call. sms.jobs.proof_until is when that ends for the job's
--   earliest such call (its start + the window): the claim takes these retries before anything else
--   (an index of their own), the reservation does not cap them while the window lasts, the rescue sets
--   it from the grant's slot and, once it has passed, gives the holder's own answer a while to land
--   before the retry. A retry made after it says so on the row (a second SMS is possible).
-- * One wording for a job that ends unsent while an earlier call of it may have gone out
--   (sms.unproven_message): every statement that settles jobs (write-back, rescue, paused expiry,
--   cancel) uses it.
-- * Locks nobody else can take. The reservation's locks (a phone, the fraud guard's keys) were
--   advisory locks on predictable keys, which every login may take: another application holding one
--   stalled every claim turn whose batch needed it. They are row locks on sms.key_locks now, which only
--   the daemon's roles may lock, taken without waiting (SKIP LOCKED): a job whose key another session
--   holds is deferred by half a second, alone. The fraud evaluator skips its round by a row lock on
--   sms.fraud_state, retention takes no lock at all (concurrent purges only find less to delete).
-- * A pinned search_path on every function of the schema: where roles may create objects in `public`
--   (the default before PostgreSQL 15, and in upgraded databases) an unqualified name in a function body
--   could be resolved to another role's function (a more specific `public.unnest(text[])` beats
--   pg_catalog's). sms.phone_key, inlined into the generated column of every producer's insert, names
--   its operators and functions by schema instead (a SET clause would stop the inlining).
-- * Producers' values bounded at the database: phone_number at most 64 bytes, phone_country_code at
--   most 16 (named CHECK constraints). Pending rows over those bounds are rejected here first.
-- * sms.jobs.enqueued_by: the login role that inserted the job (set by the insert trigger); only that
--   role may report the job's code verified (sms.mark_verified).
-- * sms.channel_settings.max_attempts: the channels' caps on attempts, published by the daemons, so the
--   rescue counts attempts as triage does.
--
-- Stop the daemons of schema version 13 and before first: the reservation and the claim change
-- signatures, and the rescue's and the write-back's rules change with them.

-- Producers' values, bounded. The bounds are far above any number written any way (64 bytes is 21
-- full-width digits); a 100 MB number is refused at INSERT instead of reaching a daemon's memory.
UPDATE sms.jobs SET state = 'rejected', finished_at = now(), updated_at = now(), locked_by = NULL, locked_until = NULL,
    message = format('phone_number (%s bytes) or phone_country_code (%s bytes) is over the bound of 64 and 16 bytes',
                     octet_length(phone_number), octet_length(phone_country_code))
WHERE state IN ('pending', 'running')
  AND (octet_length(phone_number) > 64 OR octet_length(phone_country_code) > 16);
-- NOT VALID: finished rows from before are left as they are (a finished row is never updated again
-- but by requeue, which would refuse such a row with this constraint's name).
ALTER TABLE sms.jobs ADD CONSTRAINT jobs_phone_number_length CHECK (octet_length(phone_number) <= 64) NOT VALID;
ALTER TABLE sms.jobs ADD CONSTRAINT jobs_phone_country_code_length CHECK (octet_length(phone_country_code) <= 16) NOT VALID;

ALTER TABLE sms.jobs ADD COLUMN proof_until timestamptz NULL;
COMMENT ON COLUMN sms.jobs.proof_until IS
    'While uncertain: when GenAuth stops being able to prove the earliest call whose answer never came (its start + GenAuth''s window). A retry after it may send a second SMS, and says so.';
ALTER TABLE sms.jobs ADD COLUMN enqueued_by text NULL;
COMMENT ON COLUMN sms.jobs.enqueued_by IS 'The login role (session_user) that inserted the job.';

-- Retries of calls that may have gone out, due: the claim takes them first. Few rows; `uncertain`
-- changes on few updates, so the write-back stays a HOT update.
CREATE INDEX jobs_proof_idx ON sms.jobs (due_at, id) WHERE uncertain AND due_at IS NOT NULL;

ALTER TABLE sms.channel_settings ADD COLUMN max_attempts smallint NULL;

-- The reservation's locks: one row per key ('phone|<phone_key>', '<scope>|<key>' for the fraud
-- guard's keys), inserted when first needed, locked FOR UPDATE SKIP LOCKED until the reservation
-- commits, forgotten by retention while nobody holds them. UNLOGGED: a lock costs no WAL, and a crash
-- empties the table, which is only ever filled again on demand. Only sms_dispatcher may lock its rows.
CREATE UNLOGGED TABLE sms.key_locks (key text PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON sms.key_locks TO sms_dispatcher;

-- A job that ends in a state other than `sent` while an earlier call of it may have reached GenAuth
-- says so, in these words, wherever it is settled.
CREATE FUNCTION sms.unproven_message(p_message text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF position('may have been delivered' IN COALESCE(p_message, '')) > 0 THEN
        RETURN p_message;
    END IF;
    RETURN COALESCE(p_message || '; ', '')
        || 'delivery unknown: an earlier call whose answer never came may have been delivered';
END;
$$;

-- Every function and operator named by its schema: inlined into the generated column phone_key, the
-- body is parsed in the inserting session, under that session's search_path.
CREATE OR REPLACE FUNCTION sms.phone_key(p_country_code text, p_number text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.octet_length(
                         COALESCE(CASE WHEN p_country_code OPERATOR(pg_catalog.=) '' THEN NULL ELSE p_country_code END, '+86')
                         OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p_number) OPERATOR(pg_catalog.<=) 200
                THEN COALESCE(CASE WHEN p_country_code OPERATOR(pg_catalog.=) '' THEN NULL ELSE p_country_code END, '+86')
                     OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p_number
                ELSE 'md5:' OPERATOR(pg_catalog.||) pg_catalog.md5(
                         COALESCE(CASE WHEN p_country_code OPERATOR(pg_catalog.=) '' THEN NULL ELSE p_country_code END, '+86')
                         OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p_number) END
$$;

-- The insert trigger also records who enqueued the job (the login role: the trigger runs as the
-- owner, and sms.enqueue as the owner too, but session_user stays the caller's login).
CREATE OR REPLACE FUNCTION sms.apply_channel_defaults() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_control sms.controls;
BEGIN
    IF NEW.priority = 0 THEN
        NEW.priority := COALESCE((SELECT s.default_priority FROM sms.channel_settings s WHERE s.channel = NEW.channel), 0);
    END IF;
    v_control := sms.pause_of(NEW.channel);
    IF v_control.channel IS NOT NULL THEN
        NEW.message := sms.pause_message(v_control);
    END IF;
    NEW.enqueued_by := session_user;
    RETURN NEW;
END;
$$;

-- Only the login role that enqueued a job reports its code entered: any producer could otherwise mark
-- another's jobs verified and steer the fraud guard's baselines.
CREATE OR REPLACE FUNCTION sms.mark_verified(job_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_phone_key text;
    v_user text;
BEGIN
    UPDATE sms.jobs j SET verified_at = now()
    WHERE j.id = mark_verified.job_id AND j.state = 'sent' AND j.verified_at IS NULL
      AND j.enqueued_by = session_user
    RETURNING j.phone_key, j.user_ref INTO v_phone_key, v_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sms.fraud_verified(now(), ARRAY[v_phone_key], ARRAY[v_user]);
    RETURN true;
END;
$$;

-- The claim (version 11's), retries of calls that may have gone out first (they must reach GenAuth
-- while it can still prove the first call), and each job's proof_until.
DROP FUNCTION sms.claim_jobs(text, integer, double precision);
CREATE FUNCTION sms.claim_jobs(p_worker text, p_limit integer, p_lease double precision)
RETURNS TABLE (id bigint, lease_token bigint, channel text, phone_number text, phone_country_code text,
               phone_key text, attempts integer, max_attempts integer, created_epoch double precision,
               expires_epoch double precision, now_epoch double precision, started_epoch double precision,
               newer_job bigint, uncertain boolean, proof_epoch double precision)
LANGUAGE plpgsql SET enable_sort TO 'off' SET jit TO 'off' SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_token bigint;
    v_paused text[];
    v_until timestamptz;
BEGIN
    v_paused := sms.paused_channels();
    IF '*' = ANY (v_paused) THEN
        RETURN;
    END IF;
    v_token := nextval('sms.lease_token_seq');
    v_until := now() + make_interval(secs => p_lease);
    RETURN QUERY
    WITH proof AS (
        SELECT j.id FROM sms.jobs j
        WHERE j.uncertain AND j.due_at <= now()
          AND (v_paused IS NULL OR j.channel <> ALL (v_paused))
        ORDER BY j.due_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT j.id FROM sms.jobs j
        WHERE j.due_at <= now() AND NOT j.uncertain
          AND (v_paused IS NULL OR j.channel <> ALL (v_paused))
        ORDER BY j.priority DESC, j.due_at, j.id
        LIMIT greatest(0, p_limit - (SELECT count(*) FROM proof))
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE sms.jobs j
        SET state = 'running', locked_by = p_worker, locked_until = v_until, lease_token = v_token, updated_at = now()
        WHERE j.id = ANY (ARRAY(SELECT proof.id FROM proof UNION ALL SELECT picked.id FROM picked))
        RETURNING j.id, j.channel, j.phone_number, j.phone_country_code, j.phone_key, j.attempts, j.max_attempts,
                  j.created_at, j.expires_at, j.uncertain, j.priority, j.run_at, j.proof_until
    ), leased AS (
        INSERT INTO sms.leases (lease_token, worker, until, job_ids)
        SELECT v_token, p_worker, v_until, array_agg(c.id) FROM claimed c HAVING count(*) > 0
    )
    SELECT c.id, v_token, c.channel, c.phone_number, c.phone_country_code, c.phone_key,
           c.attempts::int, c.max_attempts::int,
           extract(epoch FROM c.created_at)::float8,
           extract(epoch FROM c.expires_at)::float8,
           -- The database's clock as the claim ends (not the transaction's start): the daemon maps its
           -- own monotonic clock onto it from the moment it sent the claim, so its estimate of the
           -- database's time runs ahead (the safe side for a proof window's close), never behind.
           extract(epoch FROM clock_timestamp())::float8,
           -- And as the claim's transaction began: the mapping that runs behind, for a call's start.
           extract(epoch FROM now())::float8,
           (SELECT max(n.id) FROM sms.jobs n
            WHERE n.phone_key = c.phone_key AND n.channel = c.channel AND n.id > c.id
              AND n.state IN ('pending', 'running')),
           c.uncertain,
           extract(epoch FROM c.proof_until)::float8
    FROM claimed c
    -- In claim order (the reservation hands out rate slots in this order).
    ORDER BY c.uncertain DESC, c.priority DESC, c.run_at, c.id;
END;
$$;

-- The fraud guard (version 13's), without locks of its own: its caller, the reservation, holds the
-- row locks of every limited key of the jobs it asks about (sms.key_locks) until it commits.
CREATE OR REPLACE FUNCTION sms.fraud_decide(
    p_now timestamptz, p_phone_keys text[], p_ips inet[], p_users text[], p_mode text, p_limits int[],
    p_trust_days int)
RETURNS TABLE (r_index int, r_decision text, r_rule text, r_detail text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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

-- The reservation (version 13's), with locks nobody else can take and the proof window.
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
DROP FUNCTION sms.reserve_sends(bigint[], bigint[], text[], text[], float8, int, int, float8, text, int[], int);
CREATE FUNCTION sms.reserve_sends(
    p_job_ids bigint[], p_tokens bigint[], p_phone_keys text[], p_channels text[], p_window float8,
    p_hour_cap int, p_day_cap int, p_rate float8, p_fraud_mode text DEFAULT 'off',
    p_fraud_limits int[] DEFAULT '{0,0,0,0}', p_trust_days int DEFAULT 0, p_proof_margin float8 DEFAULT 2)
RETURNS TABLE (r_job_id bigint, r_verdict text, r_until timestamptz, r_detail text, r_slot float8, r_rule text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
GRANT EXECUTE ON FUNCTION sms.reserve_sends(bigint[], bigint[], text[], text[], float8, int, int, float8, text, int[], int, float8)
    TO sms_dispatcher;
GRANT EXECUTE ON FUNCTION sms.claim_jobs(text, integer, double precision) TO sms_dispatcher;

-- The rescue (version 11's), with the proof window and the channels' attempt caps. A job whose call may
-- have gone out gets its proof_until from the grant's slot (the throttle row's window runs from the
-- slot: window_until = slot + p_window + 1 s) + p_horizon. Under at-least-once it is retried at once
-- while that window is open (the claim takes it first); once it has passed, the holder's own answer
-- (which lands on a rescued row: same claim token) gets p_holder_grace seconds first, since the
-- retry may be a second SMS. Attempts are capped as triage caps them: the job's max_attempts, or its
-- channel's (sms.channel_settings.max_attempts, published by the daemons) when lower.
DROP FUNCTION sms.rescue_expired_leases(text, boolean);
CREATE FUNCTION sms.rescue_expired_leases(p_policy text, p_announce boolean DEFAULT true, p_window float8 DEFAULT 60,
                                          p_horizon float8 DEFAULT 60, p_holder_grace float8 DEFAULT 15)
RETURNS TABLE (r_job_id bigint, r_state text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
GRANT EXECUTE ON FUNCTION sms.rescue_expired_leases(text, boolean, float8, float8, float8) TO sms_dispatcher;

-- Version 11's paused-job expiry; an expired job whose earlier call may have gone out says so.
CREATE OR REPLACE FUNCTION sms.expire_paused_jobs(p_limit integer, p_announce boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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

-- Version 9's cancel; a cancelled job whose earlier call may have gone out says so.
CREATE OR REPLACE FUNCTION sms.cancel_jobs(p_ids bigint[])
RETURNS TABLE (r_id bigint, r_cancelled boolean, r_state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cancelled bigint[];
BEGIN
    WITH cancelled AS (
        UPDATE sms.jobs j SET state = 'cancelled', finished_at = now(), updated_at = now(),
            message = CASE WHEN j.uncertain THEN sms.unproven_message('cancelled by an operator')
                           ELSE 'cancelled by an operator' END
        WHERE j.id = ANY (p_ids) AND j.state = 'pending'
        RETURNING j.id
    )
    SELECT COALESCE(array_agg(cancelled.id ORDER BY cancelled.id), '{}') INTO v_cancelled FROM cancelled;
    IF cardinality(v_cancelled) > 0 THEN
        PERFORM sms.announce(v_cancelled, array_fill('cancelled'::text, ARRAY[cardinality(v_cancelled)]));
    END IF;
    RETURN QUERY
    SELECT t.id, t.id = ANY (v_cancelled), j.state
    FROM unnest(p_ids) AS t(id) LEFT JOIN sms.jobs j ON j.id = t.id
    ORDER BY t.id;
END;
$$;

-- Version 10's evaluator (see there), one at a time by the row lock of its state.
CREATE OR REPLACE FUNCTION sms.fraud_evaluate(
    p_now timestamptz, p_factor float8, p_min_requests int, p_max_verified float8, p_block_minutes float8,
    p_baseline_hours float8, p_interval float8)
RETURNS TABLE (r_scope text, r_key text, r_since timestamptz, r_until timestamptz, r_reason text, r_new boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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

-- The daemon writes proof_until with the outcome of a call whose answer never came.
GRANT UPDATE (proof_until) ON sms.jobs TO sms_dispatcher;

-- Every function of the schema runs with a search_path nobody else can write to (names in the SQL
-- helpers inlined into callers, sms.phone_key, sms.phone_prefix, sms.phone_country and sms.client_key,
-- resolve under their callers' pinned path or are written with their schema: a SET clause would keep
-- them from being inlined). Functions added later set it where they are created.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'sms'::regnamespace
          AND p.proname NOT IN ('phone_key', 'phone_prefix', 'phone_country', 'client_key')
          AND NOT COALESCE('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_function);
    END LOOP;
END
$$;

-- The write-back logs a fenced-out call GenAuth answered unless its requestId is logged already.
GRANT SELECT ON sms.attempts TO sms_dispatcher;

-- Version 9's requeue; a requeued job starts with no uncertainty and no proof window.
CREATE OR REPLACE FUNCTION sms.requeue_jobs(p_states text[], p_channel text, p_ids bigint[], p_finished_within float8,
                                            p_limit int, p_dry_run boolean)
RETURNS TABLE (r_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
BEGIN
    SELECT s INTO v_bad FROM unnest(p_states) s
    WHERE s IS NULL OR s NOT IN ('failed', 'expired', 'rejected', 'cancelled', 'superseded') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'jobs in state % cannot be requeued; only failed, expired, rejected, cancelled or superseded', COALESCE(v_bad, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM sms.jobs j
        WHERE j.state = ANY (p_states)
          AND (p_channel IS NULL OR j.channel = p_channel)
          AND (cardinality(p_ids) = 0 OR j.id = ANY (p_ids))
          AND (p_finished_within IS NULL OR j.finished_at > now() - make_interval(secs => p_finished_within))
        ORDER BY j.id LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), requeued AS (
        UPDATE sms.jobs j SET state = 'pending', attempts = 0, run_at = now(), created_at = now(),
            expires_at = NULL, finished_at = NULL, sent_at = NULL, uncertain = false, proof_until = NULL, deferrals = 0,
            message = 'requeued by an operator (was ' || j.state || ': ' || COALESCE(j.message, '') || ')',
            updated_at = now()
        FROM picked WHERE j.id = picked.id AND NOT p_dry_run
        RETURNING j.id
    )
    SELECT picked.id FROM picked WHERE p_dry_run
    UNION ALL SELECT requeued.id FROM requeued;
END;
$$;
