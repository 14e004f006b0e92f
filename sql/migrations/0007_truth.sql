-- sms-dispatcher schema, version 7: the row tells the truth under every fault.

-- A claim token: a new number on every claim of a job. The daemon keeps the tokens of the jobs it
-- holds in memory; the heartbeat extends only those leases, the throttle grants only to them and the
-- write-back is fenced on them. A worker id alone could not tell a restarted process (same id) from
-- the one that died holding the jobs, nor an outcome of an earlier claim from one of this claim.
CREATE SEQUENCE sms.lease_token_seq AS bigint CACHE 100;
ALTER TABLE sms.jobs ADD COLUMN lease_token bigint NULL;

-- One row per running process: two daemons started with one worker.id are two rows (and count as
-- two for `status` and liveness), told apart by a random instance id.
ALTER TABLE sms.workers
    ADD COLUMN instance text NOT NULL DEFAULT '',
    -- Outcomes decided but not yet written to their rows (a slow or refusing database shows here).
    ADD COLUMN unwritten int NOT NULL DEFAULT 0,
    ADD COLUMN oldest_unwritten_s double precision NULL;
ALTER TABLE sms.workers DROP CONSTRAINT workers_pkey;
ALTER TABLE sms.workers ADD PRIMARY KEY (id, instance);

-- The cluster's API rate as one schedule (GCRA): every granted call takes the next slot, 1/rate apart,
-- whichever daemon makes it, so no second can exceed the limit however the daemons' timing falls.
CREATE TABLE sms.rate_schedule (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT rate_schedule_singleton CHECK (singleton),
    next_slot timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO sms.rate_schedule DEFAULT VALUES;

-- The phone's identity, bounded: a producer's number of a few KB of varied digits made the INSERT fail
-- on the index row size. Long keys are hashed (they are rejected by the daemon anyway).
CREATE FUNCTION sms.phone_key(p_country_code text, p_number text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(k) <= 200 THEN k ELSE 'md5:' || md5(k) END
    FROM (SELECT COALESCE(NULLIF(p_country_code, ''), '+86') || ' ' || p_number AS k) key
$$;
ALTER TABLE sms.jobs DROP COLUMN phone_key;
ALTER TABLE sms.jobs
    ADD COLUMN phone_key text GENERATED ALWAYS AS (sms.phone_key(phone_country_code, phone_number)) STORED;
CREATE INDEX jobs_phone_channel_open_idx ON sms.jobs (phone_key, channel, id) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_phone_sent_idx ON sms.jobs (phone_key, sent_at) WHERE state = 'sent';
-- An idempotency key too long for its unique index fails the INSERT with this constraint's name
-- instead of an index error.
ALTER TABLE sms.jobs ADD CONSTRAINT jobs_idempotency_key_length CHECK (octet_length(idempotency_key) <= 255) NOT VALID;

DROP FUNCTION sms.claim_jobs(text, int, float8);
CREATE FUNCTION sms.claim_jobs(p_worker text, p_limit int, p_lease float8)
RETURNS TABLE (id bigint, lease_token bigint, channel text, phone_number text, phone_country_code text,
               phone_key text, attempts int, max_attempts int, created_epoch float8, expires_epoch float8,
               now_epoch float8, newer_job bigint, uncertain boolean)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
AS $$
DECLARE
    v_token bigint := nextval('sms.lease_token_seq');
BEGIN
    -- See version 6 for why this shape (River's CTE, no sort).
    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM sms.jobs j
        WHERE j.state = 'pending' AND j.run_at <= now()
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE sms.jobs j
    SET state = 'running', locked_by = p_worker, locked_until = now() + make_interval(secs => p_lease),
        lease_token = v_token, updated_at = now()
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.lease_token, j.channel, j.phone_number, j.phone_country_code, j.phone_key,
              j.attempts::int, j.max_attempts::int,
              extract(epoch FROM j.created_at)::float8,
              extract(epoch FROM j.expires_at)::float8,
              extract(epoch FROM now())::float8,
              (SELECT max(n.id) FROM sms.jobs n
               WHERE n.phone_key = j.phone_key AND n.channel = j.channel AND n.id > j.id
                 AND n.state IN ('pending', 'running')),
              j.uncertain;
END;
$$;

-- The throttle, now for jobs the caller still holds only (checked under the row lock: a job whose
-- lease passed to another worker is answered `lost` and must not be sent), and with the cluster's
-- rate schedule: r_slot is when (seconds from now, by the database's clock) the call may start.
--   granted  send at r_slot; the phone+channel slot is reserved for p_window seconds
--   deferred the window is open until r_until
--   capped   a per-phone cap was reached (r_detail)
--   lost     the job is no longer running under this claim token
DROP FUNCTION sms.reserve_sends(bigint[], text[], text[], float8, int, int);
CREATE FUNCTION sms.reserve_sends(
    p_job_ids bigint[], p_tokens bigint[], p_phone_keys text[], p_channels text[], p_window float8,
    p_hour_cap int, p_day_cap int, p_rate float8)
RETURNS TABLE (r_job_id bigint, r_verdict text, r_until timestamptz, r_detail text, r_slot float8)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_until timestamptz;
    v_holder bigint;
    v_hour int;
    v_day int;
    v_owned bigint[];
    v_ids bigint[] := '{}';
    v_verdicts text[] := '{}';
    v_untils timestamptz[] := '{}';
    v_details text[] := '{}';
    v_granted bigint[] := '{}';
    v_first float8 := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330012))
    FROM (SELECT DISTINCT unnest(p_phone_keys) AS k ORDER BY 1) keys;

    SELECT array_agg(j.id) INTO v_owned
    FROM (SELECT j.id FROM unnest(p_job_ids, p_tokens) AS c(id, token)
          JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
          ORDER BY j.id
          FOR UPDATE OF j) j;

    FOR i IN 1 .. COALESCE(array_length(p_job_ids, 1), 0) LOOP
        v_ids := v_ids || p_job_ids[i];
        v_untils := v_untils || NULL::timestamptz;
        v_details := v_details || NULL::text;
        IF v_owned IS NULL OR NOT p_job_ids[i] = ANY (v_owned) THEN
            v_verdicts := v_verdicts || 'lost'::text;
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
    END LOOP;

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
           END
    FROM generate_series(1, cardinality(v_ids)) n;
END;
$$;

-- Rescue keeps the claim token: an outcome the holder could not write while the database was away
-- (longer than a lease) can still land on the rescued row, as long as nobody has claimed it since
-- (see the write-back's fence).
CREATE OR REPLACE FUNCTION sms.rescue_expired_leases(p_policy text)
RETURNS TABLE (r_job_id bigint, r_state text)
LANGUAGE sql AS $$
    UPDATE sms.jobs j SET
        state = CASE
            WHEN j.sending_at IS NULL THEN 'pending'
            WHEN p_policy = 'at-most-once' OR j.attempts + 1 >= j.max_attempts THEN 'failed'
            ELSE 'pending' END,
        attempts = j.attempts + CASE WHEN j.sending_at IS NULL THEN 0 ELSE 1 END,
        uncertain = j.uncertain OR j.sending_at IS NOT NULL,
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
    FROM (
        SELECT id FROM sms.jobs WHERE state = 'running' AND locked_until < now() FOR UPDATE SKIP LOCKED
    ) expired
    WHERE j.id = expired.id
    RETURNING j.id, j.state;
$$;
