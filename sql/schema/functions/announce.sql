-- Results back to producers: `NOTIFY sms_job_events`, payload `<id>:<state>[,<id>:<state>...]`, sent
-- by every statement that settles jobs or puts them back to wait (write-back, deferral, rescue,
-- cancel, expiry during a pause), one notification per batch. PostgreSQL refuses payloads of 8000
-- bytes or more: a batch is cut into payloads below 7,900 bytes plus one item (an item is at most
-- 20 digits, a colon and a state). Delivered at commit, so a listener never sees a state the row
-- does not (yet) have. PL/pgSQL, so its plan is cached for the session.
CREATE OR REPLACE FUNCTION sms.announce(p_ids bigint[], p_states text[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RETURN (
        SELECT count(pg_notify('sms_job_events', payload))::int
        FROM (
            SELECT string_agg(item, ',' ORDER BY n) AS payload
            FROM (
                SELECT n, item, (sum(octet_length(item) + 1) OVER (ORDER BY n) - 1) / 7900 AS chunk
                FROM (SELECT n, id::text || ':' || state AS item
                      FROM unnest(p_ids, p_states) WITH ORDINALITY AS u(id, state, n)
                      WHERE id IS NOT NULL) items
            ) chunked
            GROUP BY chunk
        ) payloads);
END;
$$;

GRANT ALL ON FUNCTION sms.announce(p_ids bigint[], p_states text[]) TO sms_dispatcher;
