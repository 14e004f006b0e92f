-- The guard's retention, at most every 5 minutes (a round that comes sooner deletes nothing), in
-- bounded deletes: counters and verifications past every window (the rolling hour, the 10 minutes,
-- the folding above), baselines decayed to nothing, blocks a week over, users no longer trusted
-- (p_trust_days 0: trust is off, the users are kept for when it is on again). Runs whatever the
-- guard's mode: verifications are counted even while it is off. Returns the rows deleted.
CREATE OR REPLACE FUNCTION sms.fraud_prune(p_now timestamp with time zone, p_baseline_hours double precision, p_trust_days integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_deleted int := 0;
    v_n int;
BEGIN
    UPDATE sms.fraud_state SET pruned_at = p_now
    WHERE pruned_at IS NULL OR pruned_at <= p_now - interval '5 minutes' OR pruned_at > p_now;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    DELETE FROM sms.fraud_counts WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM sms.fraud_counts WHERE minute < p_now - interval '62 minutes' LIMIT 200000));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    DELETE FROM sms.fraud_verifications WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM sms.fraud_verifications WHERE minute < p_now - interval '62 minutes' LIMIT 200000));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    DELETE FROM sms.fraud_baselines WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM sms.fraud_baselines
        WHERE folded_until < p_now - make_interval(secs => 30 * p_baseline_hours * 3600) LIMIT 50000));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    DELETE FROM sms.fraud_blocks WHERE until < p_now - interval '7 days';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_deleted := v_deleted + v_n;
    IF p_trust_days > 0 THEN
        DELETE FROM sms.fraud_trusted WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM sms.fraud_trusted WHERE verified_at < p_now - make_interval(days => p_trust_days) LIMIT 50000));
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_deleted := v_deleted + v_n;
    END IF;
    RETURN v_deleted;
END;
$$;

GRANT ALL ON FUNCTION sms.fraud_prune(p_now timestamp with time zone, p_baseline_hours double precision, p_trust_days integer) TO sms_dispatcher;
