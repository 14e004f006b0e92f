-- sms-dispatcher schema, version 3: crash safety (the sending_at/uncertain columns and their marking
-- came with version 2's sms.reserve_sends).


-- Returns expired leases to the queue, by the delivery policy: a job that never reached the API is
-- simply pending again; one whose call may have gone out counts that attempt and is retried under
-- at-least-once, or ends `failed` saying delivery is unknown under at-most-once.
CREATE FUNCTION sms.rescue_expired_leases(p_policy text)
RETURNS TABLE (r_job_id bigint, r_state text)
LANGUAGE sql AS $$
    UPDATE sms.jobs j SET
        state = CASE
            WHEN j.sending_at IS NULL THEN 'pending'
            WHEN p_policy = 'at-most-once' OR j.attempts + 1 >= j.max_attempts THEN 'failed'
            ELSE 'pending' END,
        attempts = j.attempts + CASE WHEN j.sending_at IS NULL THEN 0 ELSE 1 END,
        uncertain = j.sending_at IS NOT NULL,
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
        -- SKIP LOCKED: a row another statement holds is being finished by its owner right now.
        SELECT id FROM sms.jobs WHERE state = 'running' AND locked_until < now() FOR UPDATE SKIP LOCKED
    ) expired
    WHERE j.id = expired.id
    RETURNING j.id, j.state;
$$;
