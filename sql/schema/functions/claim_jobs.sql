-- The claim: up to p_limit due jobs of channels not paused, locked with SKIP LOCKED, marked `running`
-- under one lease token and one sms.leases row (the lease lives there, not on each job, so extending
-- it writes one row). Due retries of calls that may have gone out (uncertain) come first, through their
-- own small index: they must reach GenAuth while it can still prove the first call (proof_until).
-- Returns each job with the database's clock (now_epoch: clock_timestamp(), for checks; started_epoch:
-- the transaction's now(), for a call's start), the newest other live job for the same phone and
-- channel (a resend), and the proof window. Sorts off: the order is the due index's.
CREATE OR REPLACE FUNCTION sms.claim_jobs(p_worker text, p_limit integer, p_lease double precision) RETURNS TABLE(id bigint, lease_token bigint, channel text, phone_number text, phone_country_code text, phone_key text, attempts integer, max_attempts integer, created_epoch double precision, expires_epoch double precision, now_epoch double precision, started_epoch double precision, newer_job bigint, uncertain boolean, proof_epoch double precision)
    LANGUAGE plpgsql
    SET enable_sort TO 'off'
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
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

GRANT ALL ON FUNCTION sms.claim_jobs(p_worker text, p_limit integer, p_lease double precision) TO sms_dispatcher;
