-- The roles of the contract. NOLOGIN groups a site grants to its own login roles
-- (`GRANT sms_producer TO checkout_app;`), each with exactly what the contract gives it:
--   sms_producer    insert jobs (producer columns only), sms.enqueue(...), read the state of jobs
--   sms_monitor     read sms.queue_stats, sms.workers, sms.jobs, sms.attempts, sms.controls
--   sms_operator    sms_monitor, plus requeue, cancel, purge, pause and resume (through functions)
--   sms_dispatcher  what the daemon does at run time; no DDL, owns nothing
-- Everything else stays with the schema's owner, the role that runs `sms-dispatcher migrate`.
--
-- Roles belong to the cluster, not to one database: another database of the cluster may be creating
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
