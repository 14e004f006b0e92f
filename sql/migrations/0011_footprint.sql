-- Version 11: a lighter footprint on the shared PostgreSQL (issue 15). What each job costs the database
-- is what its users share with their own applications; this version cuts the WAL each job writes.
--
-- * The crash marker moves into the throttle row the reservation writes anyway (job_id and the claim's
--   lease_token): the reservation no longer rewrites the job row to set sending_at, which was a whole
--   new row version, with an entry in each of its indexes, per job. A rescue reads the marker.
-- * sms.jobs leaves room on each page (fillfactor 60) for its updates: a new version on the same page
--   is logged as the changed bytes only, and needs no extra lock record for the move.
-- * The daemon claims and reserves in one transaction (one commit, one WAL flush, fewer before the
--   call); the reservation locks only rows claimed by an earlier transaction.
-- * sms.attempts loses its identity column (its primary key index) and its foreign key (a KEY SHARE
--   row lock, logged, on the job for every call): an insert-only log keyed by (job_id, attempt).
--   sms.purge_finished deletes a purged job's attempts itself.
-- * sms.throttle is reached by its key (phone, channel) alone; its job_id index goes. The reservation's
--   window has a second to spare, so the write-back moves it only for a call slower than that; and
--   room on each page (fillfactor 70) keeps those updates on their page.
-- * The write-back becomes a HOT update. PostgreSQL updates a row in place, with no new entry in any
--   index, only when no indexed column changes (partial indexes' predicates included) and the new
--   version fits on the page. Every index of sms.jobs named `state` (or `finished_at`, `sent_at`,
--   `locked_until`), so each update of a job wrote an entry into every index. Now only the claim
--   does, into three (primary key, idempotency key, phone):
--   - The claim index is on `due_at`, a generated column: run_at while the job is pending, NULL
--     otherwise. It changes when a job is claimed or made pending again, never from running to done.
--   - One index on (phone_key, id) for every row, instead of one over open rows and one over sent rows:
--     the coalescing probes and the per-phone caps read it and filter on the channel and the state.
--   - sms.attempts is found by job through a block-range index (no WAL per call).
--   - Leases are found through sms.leases, one row per claim (its token, worker, expiry and job ids),
--     written by the claim in the same statement, extended with its jobs, deleted by the rescue once
--     none of its jobs runs under it: not through an index of running rows.
--   - The purge finds its rows in primary key order (a bounded read), not through an index of
--     finished_at.
--
-- The new column rewrites sms.jobs once, under an exclusive lock: on a table of millions of rows,
-- upgrade in a quiet moment. Stop the old daemons first: their write-back reaches throttle rows by
-- job_id, and leases are found through sms.leases rows, which this version's claim writes.

ALTER TABLE sms.jobs SET (fillfactor = 60);

ALTER TABLE sms.throttle ADD COLUMN lease_token bigint NULL;
COMMENT ON COLUMN sms.throttle.lease_token IS
    'The claim (sms.jobs.lease_token) whose call this window was granted to: while that job is running under that claim, its SMS may have gone out.';
DROP INDEX sms.throttle_job_idx;
ALTER TABLE sms.throttle SET (fillfactor = 70);

ALTER TABLE sms.attempts DROP CONSTRAINT attempts_job_id_fkey;
ALTER TABLE sms.attempts DROP COLUMN id;
-- No primary key: logical replication of its deletes (the purge) needs an identity all the same.
ALTER TABLE sms.attempts REPLICA IDENTITY FULL;

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

    SELECT array_agg(j.id ORDER BY j.id), array_agg(j.client_ip ORDER BY j.id), array_agg(j.user_ref ORDER BY j.id),
           array_agg(j.attempts ORDER BY j.id)
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

    RETURN QUERY
    SELECT v_ids[n], v_verdicts[n], v_untils[n], v_details[n],
           CASE WHEN v_verdicts[n] = 'granted'
                THEN greatest(0, v_first + (array_position(v_granted, v_ids[n]) - 1) / NULLIF(p_rate, 0))
           END,
           v_rules[n]
    FROM generate_series(1, cardinality(v_ids)) n;
END;
$$;

ALTER TABLE sms.jobs
    ADD COLUMN due_at timestamptz GENERATED ALWAYS AS (CASE WHEN state = 'pending' THEN run_at END) STORED;
COMMENT ON COLUMN sms.jobs.due_at IS
    'run_at while the job is pending, else NULL: the claim index''s key (no index names state, so the write-back is a HOT update).';
CREATE INDEX jobs_due_idx ON sms.jobs (priority DESC, due_at, id) WHERE due_at IS NOT NULL;
DROP INDEX sms.jobs_claim_idx;

-- Without the channel: a phone has few rows, the probes filter the channel on the row, and every entry
-- is the channel's 14 bytes smaller.
CREATE INDEX jobs_phone_idx ON sms.jobs (phone_key, id);
DROP INDEX sms.jobs_phone_channel_open_idx;
DROP INDEX sms.jobs_phone_sent_idx;
DROP INDEX sms.jobs_running_idx;
DROP INDEX sms.jobs_finished_idx;

-- sms.attempts is insert-only and written in about job order: a block-range index finds a job's calls
-- (and the purge's) by reading a few pages, and costs no WAL per call, unlike a B-tree entry.
DROP INDEX sms.attempts_job_idx;
CREATE INDEX attempts_job_brin ON sms.attempts USING brin (job_id) WITH (pages_per_range = 8, autosummarize = on);

CREATE TABLE sms.leases (
    lease_token bigint PRIMARY KEY,
    worker text NOT NULL,
    until timestamptz NOT NULL,
    job_ids bigint[] NOT NULL
);
COMMENT ON TABLE sms.leases IS
    'One row per claim (sms.jobs.lease_token): the rescue''s way to running jobs whose lease ran out.';
CREATE INDEX leases_until_idx ON sms.leases (until);
-- The jobs running now (claimed before this version) get their leases.
INSERT INTO sms.leases (lease_token, worker, until, job_ids)
SELECT j.lease_token, min(j.locked_by), max(j.locked_until), array_agg(j.id)
FROM sms.jobs j WHERE j.state = 'running' AND j.lease_token IS NOT NULL
GROUP BY j.lease_token;
-- A running job with no claim token (none since version 7) would have no lease row: give it one.
UPDATE sms.jobs SET lease_token = nextval('sms.lease_token_seq') WHERE state = 'running' AND lease_token IS NULL;
INSERT INTO sms.leases (lease_token, worker, until, job_ids)
SELECT j.lease_token, coalesce(j.locked_by, ''), coalesce(j.locked_until, now()), ARRAY[j.id]
FROM sms.jobs j WHERE j.state = 'running' AND NOT EXISTS (SELECT 1 FROM sms.leases l WHERE l.lease_token = j.lease_token);

-- Version 8's claim, through the due index, writing its lease row.
CREATE OR REPLACE FUNCTION sms.claim_jobs(p_worker text, p_limit integer, p_lease double precision)
RETURNS TABLE (id bigint, lease_token bigint, channel text, phone_number text, phone_country_code text,
               phone_key text, attempts integer, max_attempts integer, created_epoch double precision,
               expires_epoch double precision, now_epoch double precision, newer_job bigint, uncertain boolean)
-- jit off: with sorts disabled, the final sort of the claimed rows (a few dozen) is costed past
-- jit_above_cost, and compiling the statement took half a second per claim.
LANGUAGE plpgsql SET enable_sort TO 'off' SET jit TO 'off' AS $$
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
    -- See version 6 for why this shape (River's CTE, no sort).
    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM sms.jobs j
        WHERE j.due_at <= now()
          AND (v_paused IS NULL OR j.channel <> ALL (v_paused))
        ORDER BY j.priority DESC, j.due_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE sms.jobs j
        SET state = 'running', locked_by = p_worker, locked_until = v_until, lease_token = v_token, updated_at = now()
        -- By primary key, whatever the statistics say (a join let the planner hash the whole table).
        WHERE j.id = ANY (ARRAY(SELECT picked.id FROM picked))
        RETURNING j.id, j.channel, j.phone_number, j.phone_country_code, j.phone_key, j.attempts, j.max_attempts,
                  j.created_at, j.expires_at, j.uncertain, j.priority, j.run_at
    ), leased AS (
        INSERT INTO sms.leases (lease_token, worker, until, job_ids)
        SELECT v_token, p_worker, v_until, array_agg(c.id) FROM claimed c HAVING count(*) > 0
    )
    SELECT c.id, v_token, c.channel, c.phone_number, c.phone_country_code, c.phone_key,
           c.attempts::int, c.max_attempts::int,
           extract(epoch FROM c.created_at)::float8,
           extract(epoch FROM c.expires_at)::float8,
           extract(epoch FROM now())::float8,
           -- Read as of the statement's start (the claimed rows as they were: pending).
           (SELECT max(n.id) FROM sms.jobs n
            WHERE n.phone_key = c.phone_key AND n.channel = c.channel AND n.id > c.id
              AND n.state IN ('pending', 'running')),
           c.uncertain
    FROM claimed c
    -- In claim order (the reservation hands out rate slots in this order): an update's output has none.
    ORDER BY c.priority DESC, c.run_at, c.id;
END;
$$;

-- The rescue (version 8's) reaching expired leases through sms.leases, and reading the crash marker
-- from the throttle row (above): sending_at still counts for a job granted by a version 10 daemon. Leases are locked first (a second
-- rescuer skips them), then their expired running jobs (a row being written back or extended right
-- now is skipped, and looked at again next round), and the marker is read by a statement of its own
-- after those locks: a reservation that committed between one statement's snapshot and its lock on the
-- row (it locks the row to grant it) would be invisible to a subquery of that statement, which would
-- take a granted job for one never sent (sending_at was on the row itself, and the lock's recheck saw
-- it). A lease row goes once none of its jobs runs under it.
CREATE OR REPLACE FUNCTION sms.rescue_expired_leases(p_policy text, p_announce boolean DEFAULT true)
RETURNS TABLE (r_job_id bigint, r_state text)
LANGUAGE plpgsql AS $$
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
        WITH expired AS (
            SELECT j.id,
                   j.sending_at IS NOT NULL OR EXISTS (
                       SELECT 1 FROM sms.throttle t
                       WHERE t.phone_key = j.phone_key AND t.channel = j.channel
                         AND t.job_id = j.id AND t.lease_token = j.lease_token) AS sending
            FROM sms.jobs j WHERE j.id = ANY (v_ids) AND j.state = 'running' AND j.locked_until < now()
        ), rescued AS (
            UPDATE sms.jobs j SET
                state = CASE
                    WHEN NOT e.sending THEN 'pending'
                    WHEN p_policy = 'at-most-once' OR j.attempts + 1 >= j.max_attempts THEN 'failed'
                    ELSE 'pending' END,
                attempts = j.attempts + CASE WHEN e.sending THEN 1 ELSE 0 END,
                uncertain = j.uncertain OR e.sending,
                message = CASE
                    WHEN NOT e.sending THEN
                        'lease of worker ' || j.locked_by || ' expired before its API call; returned to pending'
                    WHEN p_policy = 'at-most-once' THEN
                        'delivery unknown: worker ' || j.locked_by || ' stopped during the API call; not retried (delivery.policy = at-most-once)'
                    WHEN j.attempts + 1 >= j.max_attempts THEN
                        'delivery unknown: worker ' || j.locked_by || ' stopped during the API call; attempts exhausted (' || (j.attempts + 1) || ' of ' || j.max_attempts || ')'
                    ELSE
                        'delivery unknown: worker ' || j.locked_by || ' stopped during the API call; retrying (delivery.policy = at-least-once)'
                    END,
                finished_at = CASE
                    WHEN e.sending AND (p_policy = 'at-most-once' OR j.attempts + 1 >= j.max_attempts) THEN now()
                    ELSE NULL END,
                run_at = now(),
                updated_at = now(),
                locked_by = NULL,
                locked_until = NULL,
                sending_at = NULL
            FROM expired e
            WHERE j.id = e.id
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

-- Version 9's purge, deleting the purged jobs' attempts too (no foreign key cascades any more), in
-- primary key order (no index on finished_at: the write-back changes it, and an index on it would keep
-- the write-back from being a HOT update). Old rows have the lowest ids, so a batch is found at the
-- start of the primary key; a statement reads at most p_batch × 20 rows (at least 20,000) of it, so a
-- table with nothing to purge costs a few milliseconds, not a scan. (Finished rows behind that many
-- unfinished ones at the start wait until those finish.) Sorts off: the order is the index's.
CREATE OR REPLACE FUNCTION sms.purge_finished(p_older_than double precision, p_batch integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET enable_sort TO 'off' SET jit TO 'off' AS $$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(f.id) INTO v_ids
    FROM (SELECT c.id FROM (SELECT j.id, j.finished_at FROM sms.jobs j ORDER BY j.id
                            LIMIT greatest(p_batch * 20, 20000)) c
          WHERE c.finished_at < now() - make_interval(secs => p_older_than)
          LIMIT p_batch) f;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    -- Checked again: a job requeued meanwhile is not finished any more.
    WITH purged AS (
        DELETE FROM sms.jobs j WHERE j.id = ANY (v_ids) AND j.finished_at < now() - make_interval(secs => p_older_than)
        RETURNING j.id
    )
    SELECT array_agg(id) INTO v_ids FROM purged;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    -- The range lets the block-range index find the attempts.
    DELETE FROM sms.attempts a
    WHERE a.job_id BETWEEN (SELECT min(x) FROM unnest(v_ids) x) AND (SELECT max(x) FROM unnest(v_ids) x)
      AND a.job_id = ANY (v_ids);
    RETURN cardinality(v_ids);
END;
$$;

-- Version 8's paused-job expiry, reaching pending jobs through the due index.
CREATE OR REPLACE FUNCTION sms.expire_paused_jobs(p_limit integer, p_announce boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql AS $$
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

GRANT SELECT, INSERT, UPDATE, DELETE ON sms.leases TO sms_dispatcher;
GRANT SELECT ON sms.leases TO sms_monitor;
