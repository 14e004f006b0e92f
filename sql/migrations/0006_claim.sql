-- sms-dispatcher schema, version 6: a claim whose plan does not depend on fresh statistics.

-- River's claim (CTE, LIMIT over rows actually locked). Wrapped in a function for its SET clause (and in
-- PL/pgSQL, which keeps the plan, rather than SQL, which plans it again on every call):
-- right after a burst of inserts, before autovacuum has analyzed them, the planner believes a handful
-- of jobs are pending and reads *every* pending row through a bitmap scan and sorts them, for each
-- batch (measured: 10 ms per 30-job claim with 30,000 pending, the loop's biggest cost). The claim
-- index is in exactly the claim's order, so walking it and stopping at the limit is right whatever
-- the statistics say; with sorting priced out, that is the plan the planner takes.
CREATE FUNCTION sms.claim_jobs(p_worker text, p_limit int, p_lease float8)
RETURNS TABLE (id bigint, channel text, phone_number text, phone_country_code text, phone_key text,
               attempts int, max_attempts int, created_epoch float8, expires_epoch float8, now_epoch float8,
               newer_job bigint, uncertain boolean)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
AS $$
BEGIN
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
        updated_at = now()
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.channel, j.phone_number, j.phone_country_code, j.phone_key, j.attempts::int,
              j.max_attempts::int,
              extract(epoch FROM j.created_at)::float8,
              extract(epoch FROM j.expires_at)::float8,
              extract(epoch FROM now())::float8,
              -- A newer job for the same phone and channel still to send: this one may be superseded.
              (SELECT max(n.id) FROM sms.jobs n
               WHERE n.phone_key = j.phone_key AND n.channel = j.channel AND n.id > j.id
                 AND n.state IN ('pending', 'running')),
              j.uncertain;
END;
$$;
