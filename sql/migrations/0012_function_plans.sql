-- Version 12: the small SQL helpers on the path from an insert to its call keep their plans.
--
-- PostgreSQL runs a LANGUAGE sql function that it cannot inline (its body has a FROM clause) through
-- its SQL-function executor, which parses and plans the body again for every statement, or every
-- PL/pgSQL expression evaluation, that calls it; a PL/pgSQL function keeps its statements' plans for
-- the session. `perf` on the claim loop's backend at 500 single inserts a second put ~10% of its CPU
-- in that executor. Same results, same signatures, same grants:
--
-- * sms.phone_key (the generated column `phone_key`, computed on every insert) becomes a single
--   expression the planner inlines.
-- * sms.paused_channels (every claim and reservation), sms.pause_of (every insert, through the
--   channel-defaults trigger) and sms.announce (every write-back, rescue and expiry) become PL/pgSQL.

CREATE OR REPLACE FUNCTION sms.phone_key(p_country_code text, p_number text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(COALESCE(NULLIF(p_country_code, ''), '+86') || ' ' || p_number) <= 200
                THEN COALESCE(NULLIF(p_country_code, ''), '+86') || ' ' || p_number
                ELSE 'md5:' || md5(COALESCE(NULLIF(p_country_code, ''), '+86') || ' ' || p_number) END
$$;

CREATE OR REPLACE FUNCTION sms.paused_channels() RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT array_agg(c.channel) FROM sms.controls c WHERE c.paused_until IS NULL OR c.paused_until > now());
END;
$$;

CREATE OR REPLACE FUNCTION sms.pause_of(p_channel text) RETURNS sms.controls
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- A scalar subquery: NULL when no pause holds, as the SQL function returned.
    RETURN (SELECT c FROM sms.controls c
            WHERE c.channel IN ('*', p_channel) AND (c.paused_until IS NULL OR c.paused_until > now())
            ORDER BY c.channel = '*' DESC LIMIT 1);
END;
$$;

CREATE OR REPLACE FUNCTION sms.announce(p_ids bigint[], p_states text[]) RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
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
