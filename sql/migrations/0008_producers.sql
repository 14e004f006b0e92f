-- sms-dispatcher schema, version 8: results back to producers, runtime control, fraud-guard inputs.
-- (The roles and their grants come in version 9, once every object they name exists.)

-- The fraud guard's inputs, set by producers (optional): the end user's address and the producer's
-- own account or session id.
ALTER TABLE sms.jobs
    ADD COLUMN client_ip inet NULL,
    ADD COLUMN user_ref text NULL;
ALTER TABLE sms.jobs ADD CONSTRAINT jobs_user_ref_length CHECK (octet_length(user_ref) <= 255) NOT VALID;

-- Results back to producers: `NOTIFY sms_job_events`, payload `<id>:<state>[,<id>:<state>...]`, sent
-- by every statement that settles jobs or puts them back to wait (write-back, deferral, rescue,
-- cancel, expiry during a pause), one notification per batch. PostgreSQL refuses payloads of 8000
-- bytes or more: a batch is cut into payloads below 7,900 bytes plus one item (an item is at most
-- 20 digits, a colon and a state). Delivered at commit, so a listener never sees a state the row
-- does not (yet) have.
CREATE FUNCTION sms.announce(p_ids bigint[], p_states text[]) RETURNS int
LANGUAGE sql VOLATILE AS $$
    SELECT count(pg_notify('sms_job_events', payload))::int
    FROM (
        SELECT string_agg(item, ',' ORDER BY n) AS payload
        FROM (
            SELECT n, item, (sum(octet_length(item) + 1) OVER (ORDER BY n) - 1) / 7900 AS chunk
            FROM (SELECT n, id::text || ':' || state AS item
                  FROM unnest(p_ids, p_states) WITH ORDINALITY AS u(id, state, n)
                  WHERE id IS NOT NULL) items
        ) chunked
        GROUP BY chunk
    ) payloads
$$;

-- Runtime control: a row per pause. channel '*' pauses every channel. Who paused (the database role
-- that called sms.pause), why, since when and until when (NULL: until resumed). A pause whose
-- paused_until has passed no longer applies; sms.pause and sms.resume remove such rows.
CREATE TABLE sms.controls (
    channel      text PRIMARY KEY CONSTRAINT controls_channel_check CHECK (channel = '*' OR channel IN (
                     'CHANNEL_LOGIN', 'CHANNEL_REGISTER', 'CHANNEL_RESET_PASSWORD',
                     'CHANNEL_BIND_PHONE', 'CHANNEL_UNBIND_PHONE', 'CHANNEL_BIND_MFA',
                     'CHANNEL_VERIFY_MFA', 'CHANNEL_UNBIND_MFA', 'CHANNEL_COMPLETE_PHONE',
                     'CHANNEL_IDENTITY_VERIFICATION', 'CHANNEL_DELETE_ACCOUNT')),
    paused_by    text NOT NULL,
    reason       text NULL,
    paused_since timestamptz NOT NULL DEFAULT now(),
    paused_until timestamptz NULL
);
COMMENT ON TABLE sms.controls IS 'Pauses set by `sms-dispatcher pause` (sms.pause); channel ''*'' means every channel.';

-- The message a paused pending job carries (so a producer reading its row learns why it waits).
CREATE FUNCTION sms.pause_message(p_control sms.controls) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'paused: ' || CASE WHEN p_control.channel = '*' THEN 'all channels' ELSE p_control.channel END
        || ' paused by ' || p_control.paused_by
        || ' since ' || to_char(p_control.paused_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
        || COALESCE(' until ' || to_char(p_control.paused_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', '')
        || COALESCE(': ' || p_control.reason, '')
        || '; waiting (its TTL still applies)'
$$;

-- The channels paused now ('*': all), or NULL: what the claim, the throttle and the expiry obey.
CREATE FUNCTION sms.paused_channels() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(c.channel) FROM sms.controls c WHERE c.paused_until IS NULL OR c.paused_until > now()
$$;

-- The pause holding a channel now (the pause of all channels first), or a row of NULLs.
CREATE FUNCTION sms.pause_of(p_channel text) RETURNS sms.controls
LANGUAGE sql STABLE AS $$
    SELECT c FROM sms.controls c
    WHERE c.channel IN ('*', p_channel) AND (c.paused_until IS NULL OR c.paused_until > now())
    ORDER BY c.channel = '*' DESC LIMIT 1
$$;

-- Pauses one channel (or all, p_channel NULL) until resumed or for p_for. Pending jobs of that scope
-- say so in their message; the daemons stop claiming them at their next claim (the claim reads
-- sms.controls) and hear of it at once (NOTIFY sms_controls) for their logs, metrics and status.
-- Returns the stored row. Pausing again replaces the reason and the end.
CREATE FUNCTION sms.pause(p_channel text DEFAULT NULL, p_reason text DEFAULT NULL, p_for interval DEFAULT NULL)
RETURNS sms.controls
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row sms.controls;
BEGIN
    IF p_for IS NOT NULL AND p_for <= interval '0' THEN
        RAISE EXCEPTION 'sms.pause: the duration must be positive, got %', p_for USING ERRCODE = '22023';
    END IF;
    DELETE FROM sms.controls c WHERE c.paused_until <= now();
    -- session_user, not current_user: inside this SECURITY DEFINER function current_user is its owner.
    INSERT INTO sms.controls AS c (channel, paused_by, reason, paused_since, paused_until)
    VALUES (COALESCE(p_channel, '*'), session_user, p_reason, now(), now() + p_for)
    ON CONFLICT (channel) DO UPDATE SET paused_by = EXCLUDED.paused_by, reason = EXCLUDED.reason,
        paused_until = EXCLUDED.paused_until
    RETURNING c.* INTO v_row;
    -- Tell the waiting jobs, a bounded batch at a time and never waiting for a row someone holds
    -- (a write-back, a claim): the pause must not stall the queue, nor deadlock with a write-back
    -- that supersedes pending rows. The rest are told by sms.expire_paused_jobs' rounds.
    UPDATE sms.jobs j SET message = sms.pause_message(v_row), updated_at = now()
    WHERE j.id IN (SELECT p.id FROM sms.jobs p
                   WHERE p.state = 'pending' AND (v_row.channel = '*' OR p.channel = v_row.channel)
                   LIMIT 10000 FOR UPDATE SKIP LOCKED);
    PERFORM pg_notify('sms_controls', v_row.channel);
    RETURN v_row;
END;
$$;

-- Ends the pause of one channel, or every pause (p_channel NULL). Returns how many pauses it ended.
-- Pending jobs lose their "paused" message unless another pause still holds them; the daemons are
-- woken to claim them.
CREATE FUNCTION sms.resume(p_channel text DEFAULT NULL) RETURNS int
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ended int;
    v_channel text := NULLIF(p_channel, '*');
BEGIN
    DELETE FROM sms.controls c WHERE v_channel IS NULL OR c.channel = v_channel OR c.paused_until <= now();
    GET DIAGNOSTICS v_ended = ROW_COUNT;
    -- Bounded and never waiting, as in sms.pause; a job left with the old message gets its next one
    -- when it is claimed, within a poll interval.
    UPDATE sms.jobs j SET message = NULL, updated_at = now()
    WHERE j.id IN (SELECT p.id FROM sms.jobs p
                   WHERE p.state = 'pending' AND p.message LIKE 'paused: %'
                     AND (v_channel IS NULL OR p.channel = v_channel)
                     AND NOT EXISTS (SELECT 1 FROM sms.controls c WHERE c.channel IN ('*', p.channel))
                   LIMIT 10000 FOR UPDATE SKIP LOCKED);
    PERFORM pg_notify('sms_controls', COALESCE(v_channel, '*'));
    PERFORM pg_notify('sms_jobs', '');
    RETURN v_ended;
END;
$$;

-- The insert trigger (see version 2) also tells a job inserted during a pause why it waits.
CREATE OR REPLACE FUNCTION sms.apply_channel_defaults() RETURNS trigger LANGUAGE plpgsql AS $$
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
    RETURN NEW;
END;
$$;

-- The channels' TTLs, published by the daemons with their default priorities: jobs of a paused
-- channel are never claimed, so their expiry happens here (sms.expire_paused_jobs) and not in the
-- daemon's triage.
ALTER TABLE sms.channel_settings ADD COLUMN ttl_seconds float8 NULL;

-- Pending jobs of paused channels whose time ran out end `expired` (at most p_limit per call; the
-- rescuer calls it every round). expires_at, or created_at + the channel's published TTL. A row the
-- rescue left uncertain and still fenced for its holder (its call's outcome may yet arrive) is left
-- alone: its holder's late answer must be able to land; after the pause the daemon settles it.
-- Also tells up to p_limit paused jobs why they wait (those sms.pause did not reach). p_announce
-- false: the same without NOTIFY (PostgreSQL refuses notifications while its queue is full).
CREATE FUNCTION sms.expire_paused_jobs(p_limit int, p_announce boolean DEFAULT true) RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_paused text[];
    v_ids bigint[];
    v_control sms.controls;
BEGIN
    v_paused := sms.paused_channels();
    IF v_paused IS NULL THEN
        RETURN 0;
    END IF;
    -- Driven by the pending jobs' partial index (state = 'pending'), not by the whole history.
    WITH due AS (
        SELECT j.id FROM sms.jobs j LEFT JOIN sms.channel_settings s ON s.channel = j.channel
        WHERE j.state = 'pending' AND ('*' = ANY (v_paused) OR j.channel = ANY (v_paused))
          AND NOT (j.uncertain AND j.lease_token IS NOT NULL)
          AND (j.expires_at <= now()
               OR (s.ttl_seconds > 0 AND j.created_at + make_interval(secs => s.ttl_seconds) <= now()))
        LIMIT p_limit
        FOR UPDATE OF j SKIP LOCKED
    ), expired AS (
        UPDATE sms.jobs j SET state = 'expired', finished_at = now(), updated_at = now(),
            message = CASE WHEN j.expires_at <= now()
                           THEN 'expires_at passed while its channel was paused'
                           ELSE 'older than ' || j.channel || '''s TTL while its channel was paused' END
        FROM due WHERE j.id = due.id
        RETURNING j.id
    )
    SELECT array_agg(id) INTO v_ids FROM expired;
    FOR v_control IN SELECT * FROM sms.controls c WHERE c.channel = ANY (v_paused)
                     ORDER BY c.channel = '*' DESC LOOP
        UPDATE sms.jobs j SET message = sms.pause_message(v_control), updated_at = now()
        WHERE j.id IN (SELECT p.id FROM sms.jobs p
                       WHERE p.state = 'pending' AND (v_control.channel = '*' OR p.channel = v_control.channel)
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

-- The claim (version 7) skips paused channels (and claims nothing while everything is paused).
-- Read here, on every claim, rather than from a daemon's memory: a pause holds from the moment its
-- transaction commits, whatever the daemons have heard yet.
CREATE OR REPLACE FUNCTION sms.claim_jobs(p_worker text, p_limit int, p_lease float8)
RETURNS TABLE (id bigint, lease_token bigint, channel text, phone_number text, phone_country_code text,
               phone_key text, attempts int, max_attempts int, created_epoch float8, expires_epoch float8,
               now_epoch float8, newer_job bigint, uncertain boolean)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
AS $$
DECLARE
    v_token bigint;
    v_paused text[];
BEGIN
    v_paused := sms.paused_channels();
    IF '*' = ANY (v_paused) THEN
        RETURN;
    END IF;
    v_token := nextval('sms.lease_token_seq');
    -- See version 6 for why this shape (River's CTE, no sort).
    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM sms.jobs j
        WHERE j.state = 'pending' AND j.run_at <= now()
          AND (v_paused IS NULL OR j.channel <> ALL (v_paused))
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

-- The throttle (version 7) also answers `paused` (r_detail: the pause's message) for a job whose
-- channel was paused after its claim: it waited in a daemon's hands (for its turn, or for a
-- reservation the database did not answer) and must not go out now. No attempt used; back to pending.
CREATE OR REPLACE FUNCTION sms.reserve_sends(
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
    v_paused text[];
    v_control sms.controls;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330012))
    FROM (SELECT DISTINCT unnest(p_phone_keys) AS k ORDER BY 1) keys;

    SELECT array_agg(j.id) INTO v_owned
    FROM (SELECT j.id FROM unnest(p_job_ids, p_tokens) AS c(id, token)
          JOIN sms.jobs j ON j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
          ORDER BY j.id
          FOR UPDATE OF j) j;

    -- Read after the locks: a pause committed before this point holds for every job of this batch.
    v_paused := sms.paused_channels();

    FOR i IN 1 .. COALESCE(array_length(p_job_ids, 1), 0) LOOP
        v_ids := v_ids || p_job_ids[i];
        v_untils := v_untils || NULL::timestamptz;
        v_details := v_details || NULL::text;
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

-- Rescue (version 7) now announces what it did to each job; p_announce false: the same without
-- NOTIFY (PostgreSQL refuses notifications while its queue is full: the rescue must not depend on it).
DROP FUNCTION sms.rescue_expired_leases(text);
CREATE FUNCTION sms.rescue_expired_leases(p_policy text, p_announce boolean DEFAULT true)
RETURNS TABLE (r_job_id bigint, r_state text)
LANGUAGE sql AS $$
    WITH rescued AS (
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
        RETURNING j.id, j.state
    ), announced AS (
        SELECT sms.announce(array_agg(id ORDER BY id), array_agg(state ORDER BY id)) AS n FROM rescued
        WHERE p_announce
    )
    SELECT r.id, r.state FROM rescued r, announced a WHERE a.n IS NOT NULL
$$;

-- Producers' enqueue: the job's id; a repeated idempotency key returns the first job's id (whatever
-- the repeat's other arguments). Only producer columns can be set through it. SECURITY DEFINER so a
-- producer needs nothing but EXECUTE (granted in version 9); a plain INSERT keeps working too.
CREATE FUNCTION sms.enqueue(
    channel text, phone_number text, phone_country_code text DEFAULT NULL, priority smallint DEFAULT 0,
    expires_at timestamptz DEFAULT NULL, idempotency_key text DEFAULT NULL, metadata jsonb DEFAULT NULL,
    client_ip inet DEFAULT NULL, user_ref text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    -- Bounded: a first job deleted (purged) between the conflict and the lookup is inserted again.
    FOR attempt IN 1 .. 3 LOOP
        INSERT INTO sms.jobs AS j (channel, phone_number, phone_country_code, priority, expires_at,
                                   idempotency_key, metadata, client_ip, user_ref)
        VALUES (enqueue.channel, enqueue.phone_number, enqueue.phone_country_code,
                COALESCE(enqueue.priority, 0), enqueue.expires_at, enqueue.idempotency_key,
                enqueue.metadata, enqueue.client_ip, enqueue.user_ref)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING j.id INTO v_id;
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
        SELECT j.id INTO v_id FROM sms.jobs j WHERE j.idempotency_key = enqueue.idempotency_key;
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'sms.enqueue: idempotency key % kept conflicting with a job that vanished', enqueue.idempotency_key
        USING ERRCODE = '40001';
END;
$$;

-- queue_stats gains `paused`: whether the channel is paused now (by its own pause or by '*').
CREATE OR REPLACE VIEW sms.queue_stats AS
SELECT
    channel,
    state,
    count(*) AS jobs,
    count(*) FILTER (WHERE state = 'pending' AND run_at <= now()) AS due,
    extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending'))::double precision
        AS oldest_pending_age_s,
    count(*) FILTER (WHERE state = 'sent' AND sent_at > now() - interval '1 minute') AS sent_last_minute,
    count(*) FILTER (WHERE state = 'sent' AND sent_at > now() - interval '1 hour') AS sent_last_hour,
    count(*) FILTER (WHERE state = 'pending' AND deferrals > 0 AND run_at > now()) AS deferred,
    (sms.pause_of(channel)).channel IS NOT NULL AS paused
FROM sms.jobs
GROUP BY channel, state;
