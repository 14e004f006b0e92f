-- The write-back (CompleteJobs.swift binds the parameters and reads the counts): a batch of outcomes in
-- one statement, fenced on the claim token, with the truth-late exceptions described there.
--   $1 worker       $2..$19 per outcome: id, token, state, called (0/1), http_status, status_code,
--                   api_code, message, request_id, retry_in (s), started_ago and finished_ago (s by the
--                   host's monotonic clock: only the database's clock is written), the attempt's
--                   outcome and message, deferred_until, coalesce (0/1), uncertain (0/1), unseen_until
--   $20 the phone window (s)   $21 announce on sms_job_events
WITH r AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::int[], $6::int[], $7::int[],
                         $8::int[], $9::text[], $10::text[], $11::float8[], $12::float8[],
                         $13::float8[], $14::text[], $15::text[], $16::float8[], $17::int[], $18::int[],
                         $19::float8[])
        AS r(id, token, state, called, http_status, status_code, api_code, message, request_id,
             retry_in, started_ago, finished_ago, outcome, call_message, deferred_until, coalesce,
             uncertain, unseen_until)
), done AS (
    UPDATE sms.jobs j SET
        state = r.state,
        -- A rescued row already counts the call the rescue could not see the end of.
        attempts = j.attempts + CASE WHEN j.state = 'running' AND j.lease_token = r.token THEN r.called ELSE 0 END,
        http_status = CASE WHEN r.called = 1 THEN r.http_status ELSE j.http_status END,
        status_code = CASE WHEN r.called = 1 THEN r.status_code ELSE j.status_code END,
        api_code = CASE WHEN r.called = 1 THEN r.api_code ELSE j.api_code END,
        request_id = CASE WHEN r.called = 1 THEN r.request_id ELSE j.request_id END,
        message = CASE
            -- The truth, late (see the WHERE clause): what the row said meanwhile stays readable.
            WHEN NOT (j.lease_token IS NOT DISTINCT FROM r.token
                      AND (j.state IS NOT DISTINCT FROM 'running'
                           OR (r.called = 1 AND j.locked_by IS NULL AND j.uncertain
                               AND j.state IN ('pending', 'failed')))) THEN
                'sent: an answer that came after the job had moved on: '
                || CASE WHEN r.status_code = 200 THEN 'GenAuth accepted its call' ELSE COALESCE(r.message, 'sent') END
                || ' (it was ' || j.state || ': ' || left(COALESCE(j.message, ''), 300) || ')'
                -- Another call of it was made since and may have gone out unseen too: an uncertain one
                -- written since, or the call of the claim holding it now, whose answer will be
                -- fenced out from here on. (Whether that claim was granted its call cannot be read
                -- here: its grant may have committed while this statement waited for the row, and
                -- this statement's snapshot would not show it.)
                || CASE WHEN (j.uncertain AND j.attempts >= 2) OR j.state = 'running'
                        THEN '; a second SMS is possible: another call of this job whose answer never came may have been delivered too'
                        ELSE '' END
            -- Ending unsent while an earlier call may have gone out: said in one wording.
            WHEN r.state NOT IN ('sent', 'pending') AND (j.uncertain OR r.uncertain = 1)
                THEN sms.unproven_message(r.message)
            ELSE r.message END,
        run_at = CASE WHEN r.deferred_until IS NOT NULL THEN to_timestamp(r.deferred_until)
                      WHEN r.state = 'pending' THEN now() + make_interval(secs => r.retry_in)
                      ELSE j.run_at END,
        deferrals = j.deferrals + CASE WHEN r.deferred_until IS NOT NULL THEN 1 ELSE 0 END,
        sent_at = CASE WHEN r.state = 'sent' THEN now() - make_interval(secs => r.finished_ago) ELSE j.sent_at END,
        finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE now() END,
        locked_by = NULL,
        locked_until = NULL,
        -- Set only by daemons of schema version 10 and before (the marker is the throttle row's now).
        sending_at = NULL,
        -- Written by its holder: this claim is over, so a retried write (its reply lost) cannot
        -- apply twice through the rescued-row path below. Only a rescue keeps the token.
        lease_token = NULL,
        uncertain = CASE WHEN r.state = 'sent' THEN false WHEN r.called = 1 THEN r.uncertain = 1 ELSE j.uncertain END,
        -- A call that may have gone out unseen: GenAuth proves it only within its window from
        -- the call's start; the earliest such call's window is the one that counts.
        -- Cleared once the job is no longer uncertain (a later uncertainty starts a window of its own).
        proof_until = CASE WHEN r.state = 'sent' OR (r.called = 1 AND r.uncertain = 0) THEN NULL
                           WHEN r.unseen_until IS NOT NULL
                           THEN least(CASE WHEN j.uncertain THEN j.proof_until END, to_timestamp(r.unseen_until))
                           ELSE j.proof_until END,
        updated_at = now()
    FROM r
    -- Found by primary key, whatever the statistics say: the state tests are spelt so that no
    -- partial index matches them (a burst of jobs right after ANALYZE once made the planner
    -- scan every open job instead).
    WHERE j.id = r.id
      -- Redundant, for the plan: a primary key lookup the planner cannot trade for a hash join
      -- over a scan of the table (it did, on a young table's statistics: 1-3 ms a batch).
      AND j.id = ANY ($2::bigint[])
      AND ((j.lease_token = r.token
            AND (j.state IS NOT DISTINCT FROM 'running'
                 OR (r.called = 1 AND j.locked_by IS NULL AND j.uncertain
                     AND j.state IN ('pending', 'failed'))))
           -- The truth, late: a call GenAuth accepted settles its job as sent whoever holds it
           -- now and whatever it ended as meanwhile (its lease rescued and claimed again, expired,
           -- superseded, failed "delivery unknown"): no SMS GenAuth accepted is labelled unsent.
           -- A claim holding it now is fenced out (its reservation finds the job lost).
           OR (r.state = 'sent' AND r.called = 1 AND j.state IS DISTINCT FROM 'sent'))
    RETURNING j.id, j.attempts, j.phone_key, j.channel, j.state,
              -- (the late path's wording: the daemon counts its own possible duplicates itself)
              j.message LIKE '%another call of this job whose answer never came%' AS second_possible
), doubled AS (
    -- Accepted, on a job already sent by another of its calls: the phone had a second SMS. Said.
    UPDATE sms.jobs j SET updated_at = now(),
        message = left(COALESCE(j.message, ''), 500) || '; a second SMS went out: GenAuth also accepted another call of this job'
                  || COALESCE(' (requestId ' || r.request_id || ')', '')
    FROM r
    -- Both acceptances: a presumed-sent answer (429) sent nothing, and a row presumed sent is the
    -- very call whose acceptance this is.
    WHERE j.id = r.id AND j.id = ANY ($2::bigint[]) AND r.state = 'sent' AND r.called = 1 AND r.status_code = 200
      AND j.state IS NOT DISTINCT FROM 'sent' AND j.status_code = 200
      AND j.request_id IS DISTINCT FROM r.request_id
    RETURNING j.id
), logged AS (
    -- Every call made, whether or not its outcome could still be written: the attempts log is
    -- the record of what was sent to GenAuth. A fenced-out call is logged when GenAuth answered
    -- it and its requestId is not logged yet (a write retried after its reply was lost adds
    -- nothing; a call no answer came for, fenced out, leaves nothing to tell it apart by).
    INSERT INTO sms.attempts (job_id, attempt, worker, started_at, finished_at, outcome,
                              http_status, status_code, api_code, message, request_id)
    -- (CASE: the lookups run for fenced-out calls only, not for every row written.)
    SELECT r.id, CASE WHEN done.id IS NOT NULL THEN done.attempts
                      ELSE COALESCE((SELECT f.attempts FROM sms.jobs f WHERE f.id = r.id), 0) END,
           $1, now() - make_interval(secs => r.started_ago),
           now() - make_interval(secs => r.finished_ago), r.outcome,
           r.http_status, r.status_code, r.api_code, r.call_message, r.request_id
    FROM r LEFT JOIN done ON done.id = r.id
    WHERE r.called = 1
      AND CASE WHEN done.id IS NOT NULL THEN true
               ELSE r.request_id IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM sms.attempts a WHERE a.job_id = r.id AND a.request_id = r.request_id)
          END
    RETURNING 1
), windows AS (
    -- The window runs from the end of the call that sent (or may have sent), so it never closes
    -- before GenAuth's. The reservation's already does, with a second to spare, for any call
    -- that ended within a second of its slot: only a slower call's window is moved.
    UPDATE sms.throttle t SET window_until = now() - make_interval(secs => r.finished_ago)
                                             + make_interval(secs => $20::float8)
    FROM r JOIN done ON done.id = r.id
    WHERE t.phone_key = done.phone_key AND t.channel = done.channel AND t.job_id = r.id
      AND (r.state = 'sent' OR (r.called = 1 AND r.uncertain = 1))
      AND t.window_until < now() - make_interval(secs => r.finished_ago) + make_interval(secs => $20::float8)
    RETURNING 1
), released AS (
    -- A call certain not to have sent frees its phone+channel slot for the retry.
    DELETE FROM sms.throttle t
    USING r JOIN done ON done.id = r.id
    WHERE t.phone_key = done.phone_key AND t.channel = done.channel AND t.job_id = r.id
      AND r.called = 1 AND r.state <> 'sent' AND r.uncertain = 0
    RETURNING 1
), superseded AS (
    -- Driven from the few sent rows, one index probe each for older pending jobs of the same
    -- phone and channel, whatever the statistics say. OFFSET 0 keeps the LATERAL probe a
    -- per-row lookup: without it the planner flattened it and, on statistics taken before a
    -- burst, joined every open job with every other (84 s for one 64-job batch with 30,000
    -- jobs pending). The probe reads the (phone, channel, id) index and filters on the state
    -- (since version 11 no index names the state, so the write-back is a HOT update).
    UPDATE sms.jobs o SET state = 'superseded', finished_at = now(), updated_at = now(),
        message = CASE WHEN o.uncertain
                       THEN sms.unproven_message('superseded by job ' || older.sent_by || ', sent to the same phone and channel')
                       ELSE 'superseded by job ' || older.sent_by || ', sent to the same phone and channel' END
    FROM (
        SELECT x.id, done.id AS sent_by
        FROM r JOIN done ON done.id = r.id,
        LATERAL (SELECT x.id FROM sms.jobs x
                 WHERE x.phone_key = done.phone_key AND x.channel = done.channel
                   AND x.state IN ('pending', 'running') AND x.state IS NOT DISTINCT FROM 'pending'
                   AND x.id < done.id
                 OFFSET 0) x
        WHERE r.state = 'sent' AND r.coalesce = 1
    ) older
    -- Not a job this very statement writes (a late acceptance for it is in the batch).
    WHERE o.id = older.id AND o.state IS NOT DISTINCT FROM 'pending' AND NOT o.id = ANY ($2::bigint[])
    RETURNING o.id
), announced AS (
    -- Producers LISTENing on sms_job_events hear of every row written here, in one or a few
    -- notifications per batch, delivered when this commits.
    SELECT sms.announce(array_agg(e.id ORDER BY e.id), array_agg(e.state ORDER BY e.id)) AS notifications
    FROM (SELECT id, state FROM done UNION ALL SELECT id, 'superseded' FROM superseded) e
    WHERE $21::bool
)
SELECT (SELECT count(*) FROM done) AS updated, (SELECT count(*) FROM logged) AS logged,
       (SELECT count(*) FROM superseded) AS superseded, (SELECT count(*) FROM doubled) AS doubled,
       (SELECT count(*) FROM done WHERE second_possible) AS second_possible,
       (SELECT notifications FROM announced) AS notifications
