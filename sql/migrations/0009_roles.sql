-- sms-dispatcher schema, version 9: least privilege. Four NOLOGIN group roles a site grants to its own
-- login roles (`GRANT sms_producer TO checkout_app;`), each with exactly what the contract gives it:
--   sms_producer    insert jobs (producer columns only), sms.enqueue(...), read the state of jobs
--   sms_monitor     read sms.queue_stats, sms.workers, sms.jobs, sms.attempts, sms.controls
--   sms_operator    sms_monitor, plus requeue, cancel, purge, pause and resume (through functions)
--   sms_dispatcher  what the daemon does at run time; no DDL, owns nothing
-- Everything else stays with the schema's owner, the role that runs `sms-dispatcher migrate`.

-- Roles belong to the cluster, not to this database: another database of the cluster may be creating
-- the same role right now (its transaction not yet committed). CREATE ROLE then waits for it and fails
-- with unique_violation (or duplicate_object once it is visible): either way the role exists.
DO $$
DECLARE
    v_role text;
    v_missing text[];
BEGIN
    SELECT array_agg(w.role ORDER BY w.n) INTO v_missing
    FROM unnest(ARRAY['sms_producer', 'sms_monitor', 'sms_operator', 'sms_dispatcher']) WITH ORDINALITY AS w(role, n)
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = w.role);
    IF v_missing IS NULL THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                   WHERE r.rolname = current_user AND (r.rolsuper OR r.rolcreaterole)) THEN
        RAISE EXCEPTION 'the roles % do not exist and % may not create roles: a superuser must run once for the cluster: %',
            array_to_string(v_missing, ', '), current_user,
            (SELECT string_agg(format('CREATE ROLE %I NOLOGIN;', m), ' ') FROM unnest(v_missing) m)
              || CASE WHEN 'sms_operator' = ANY (v_missing) OR 'sms_monitor' = ANY (v_missing)
                      THEN ' GRANT sms_monitor TO sms_operator;' ELSE '' END
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'then run `sms-dispatcher migrate` again';
    END IF;
    FOREACH v_role IN ARRAY v_missing LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- Membership is cluster-wide too (and races the same way). Granting it needs CREATEROLE (or ADMIN on
-- sms_monitor): an owner without it finds it done by the superuser who created the roles.
DO $$
BEGIN
    IF NOT pg_catalog.pg_has_role('sms_operator', 'sms_monitor', 'MEMBER') THEN
        BEGIN
            GRANT sms_monitor TO sms_operator;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION '% may not grant sms_monitor to sms_operator: a superuser must run once for the cluster: GRANT sms_monitor TO sms_operator;',
                    current_user
                    USING ERRCODE = 'insufficient_privilege', DETAIL = 'then run `sms-dispatcher migrate` again';
        END;
    END IF;
END
$$;

-- The insert trigger reads sms.channel_settings and sms.controls, which producers may not read: it
-- runs as the owner.
-- Definer functions get a search_path nobody else can write to, and name every object with its schema.
ALTER FUNCTION sms.apply_channel_defaults() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Operator `requeue`: finished, unsent jobs back to pending with fresh attempts (the TTL counts from
-- the requeue). Only those states: a running job requeued would be claimed twice while its call may
-- be under way, a sent one sent again. Returns the ids requeued (or, dry run, that would be).
CREATE FUNCTION sms.requeue_jobs(p_states text[], p_channel text, p_ids bigint[], p_finished_within float8,
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
            expires_at = NULL, finished_at = NULL, sent_at = NULL, uncertain = false, deferrals = 0,
            message = 'requeued by an operator (was ' || j.state || ': ' || COALESCE(j.message, '') || ')',
            updated_at = now()
        FROM picked WHERE j.id = picked.id AND NOT p_dry_run
        RETURNING j.id
    )
    SELECT picked.id FROM picked WHERE p_dry_run
    UNION ALL SELECT requeued.id FROM requeued;
END;
$$;

-- Operator `cancel`: pending jobs become `cancelled`, announced to producers like every terminal state.
-- Per id given: whether it was cancelled, and its state (NULL: no such job).
CREATE FUNCTION sms.cancel_jobs(p_ids bigint[])
RETURNS TABLE (r_id bigint, r_cancelled boolean, r_state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cancelled bigint[];
BEGIN
    WITH cancelled AS (
        UPDATE sms.jobs j SET state = 'cancelled', finished_at = now(), updated_at = now(),
            message = 'cancelled by an operator'
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

-- Operator `purge` and the daemon's retention: deletes up to p_batch finished jobs older than
-- p_older_than seconds, oldest first (their sms.attempts rows cascade). Returns how many. Neither role
-- may DELETE from sms.jobs itself.
CREATE FUNCTION sms.purge_finished(p_older_than float8, p_batch int)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_deleted int;
BEGIN
    DELETE FROM sms.jobs WHERE id IN (
        SELECT f.id FROM sms.jobs f
        WHERE f.finished_at < now() - make_interval(secs => p_older_than)
        ORDER BY f.finished_at LIMIT p_batch);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END;
$$;

-- Functions are executable by PUBLIC when created: a definer function only by whom it is granted to.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'sms'::regnamespace AND p.prosecdef
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END
$$;

-- Producers.
GRANT USAGE ON SCHEMA sms TO sms_producer;
GRANT INSERT (channel, phone_number, phone_country_code, priority, run_at, expires_at, max_attempts,
              idempotency_key, metadata, client_ip, user_ref)
    ON sms.jobs TO sms_producer;
-- What following a job's result needs (and `INSERT ... RETURNING id`, `ON CONFLICT (idempotency_key)`):
-- not the phone, the producer's metadata or the daemon's lease.
GRANT SELECT (id, channel, state, attempts, max_attempts, status_code, api_code, message, request_id,
              http_status, run_at, expires_at, created_at, updated_at, sent_at, finished_at, idempotency_key)
    ON sms.jobs TO sms_producer;
GRANT EXECUTE ON FUNCTION sms.enqueue(text, text, text, smallint, timestamptz, text, jsonb, inet, text) TO sms_producer;
-- The generated column phone_key calls it with the inserting role's rights.
GRANT EXECUTE ON FUNCTION sms.phone_key(text, text) TO sms_producer;

-- Monitors (and `sms-dispatcher status`).
GRANT USAGE ON SCHEMA sms TO sms_monitor;
GRANT SELECT ON sms.queue_stats, sms.workers, sms.jobs, sms.attempts, sms.controls TO sms_monitor;

-- Operators: what monitors may, and the operator functions.
GRANT USAGE ON SCHEMA sms TO sms_operator;
GRANT EXECUTE ON FUNCTION sms.requeue_jobs(text[], text, bigint[], float8, int, boolean),
                          sms.cancel_jobs(bigint[]),
                          sms.purge_finished(float8, int),
                          sms.pause(text, text, interval),
                          sms.resume(text)
    TO sms_operator;

-- The daemon: the statements of SMSJobStore/Statements and the functions they call. Jobs' rows are
-- updated in the daemon's columns only (never a phone, a priority or the producer's data), deleted only
-- by sms.purge_finished, never inserted.
GRANT USAGE ON SCHEMA sms TO sms_dispatcher;
GRANT SELECT ON sms.jobs, sms.schema_migrations TO sms_dispatcher;
GRANT UPDATE (state, attempts, status_code, api_code, message, request_id, http_status, run_at, deferrals,
              sent_at, finished_at, updated_at, locked_by, locked_until, lease_token, sending_at, uncertain)
    ON sms.jobs TO sms_dispatcher;
GRANT INSERT ON sms.attempts TO sms_dispatcher;
GRANT SELECT, INSERT, UPDATE, DELETE ON sms.throttle, sms.workers TO sms_dispatcher;
GRANT SELECT, INSERT, UPDATE ON sms.channel_settings TO sms_dispatcher;
GRANT SELECT, UPDATE ON sms.rate_schedule TO sms_dispatcher;
-- Pauses: obeyed (never lifted: only an operator resumes, and sms.pause/resume forget run-out rows).
GRANT SELECT ON sms.controls TO sms_dispatcher;
GRANT USAGE ON SEQUENCE sms.lease_token_seq TO sms_dispatcher;
GRANT EXECUTE ON FUNCTION sms.claim_jobs(text, int, float8),
                          sms.reserve_sends(bigint[], bigint[], text[], text[], float8, int, int, float8),
                          sms.rescue_expired_leases(text, boolean),
                          sms.expire_paused_jobs(int, boolean),
                          sms.announce(bigint[], text[]),
                          sms.purge_finished(float8, int),
                          sms.phone_key(text, text)
    TO sms_dispatcher;
