-- Operator `requeue`: finished, unsent jobs back to pending with fresh attempts (the TTL counts from
-- the requeue), no uncertainty and no proof window. Only those states: a running job requeued would be
-- claimed twice while its call may be under way, a sent one sent again. Returns the ids requeued (or,
-- dry run, that would be).
CREATE OR REPLACE FUNCTION sms.requeue_jobs(p_states text[], p_channel text, p_ids bigint[], p_finished_within double precision, p_limit integer, p_dry_run boolean) RETURNS TABLE(r_id bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

REVOKE ALL ON FUNCTION sms.requeue_jobs(p_states text[], p_channel text, p_ids bigint[], p_finished_within double precision, p_limit integer, p_dry_run boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.requeue_jobs(p_states text[], p_channel text, p_ids bigint[], p_finished_within double precision, p_limit integer, p_dry_run boolean) TO sms_operator;
