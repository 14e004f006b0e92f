-- Operator `purge` and the retention service: finished jobs older than p_older_than seconds, with
-- their attempts (no foreign key cascades), in primary key order (no index on finished_at: the
-- write-back changes it, and an index on it would keep the write-back from being a HOT update). Old
-- rows have the lowest ids, so a batch is found at the start of the primary key; a statement reads at
-- most p_batch × 20 rows (at least 20,000) of it, so a table with nothing to purge costs a few
-- milliseconds, not a scan. (Finished rows behind that many unfinished ones wait until those finish.)
-- Sorts off: the order is the index's.
CREATE OR REPLACE FUNCTION sms.purge_finished(p_older_than double precision, p_batch integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET enable_sort TO 'off'
    SET jit TO 'off'
    AS $$
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

REVOKE ALL ON FUNCTION sms.purge_finished(p_older_than double precision, p_batch integer) FROM PUBLIC;
GRANT ALL ON FUNCTION sms.purge_finished(p_older_than double precision, p_batch integer) TO sms_operator;
GRANT ALL ON FUNCTION sms.purge_finished(p_older_than double precision, p_batch integer) TO sms_dispatcher;
