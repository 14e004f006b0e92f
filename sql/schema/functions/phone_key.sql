-- A job's phone key, '<country code> <number>' ('+86' when none is given), or 'md5:' of it past 200
-- bytes: what the phone's window, resends and the guard group by (the daemon validates the number
-- itself). The generated column jobs.phone_key is computed by it on every insert, so it is one
-- expression the planner inlines, and it names every function and operator by its schema: inlined,
-- the body is parsed in the inserting session, under that session's search_path.
CREATE OR REPLACE FUNCTION sms.phone_key(p_country_code text, p_number text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN pg_catalog.octet_length(
                         COALESCE(CASE WHEN p_country_code OPERATOR(pg_catalog.=) '' THEN NULL ELSE p_country_code END, '+86')
                         OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p_number) OPERATOR(pg_catalog.<=) 200
                THEN COALESCE(CASE WHEN p_country_code OPERATOR(pg_catalog.=) '' THEN NULL ELSE p_country_code END, '+86')
                     OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p_number
                ELSE 'md5:' OPERATOR(pg_catalog.||) pg_catalog.md5(
                         COALESCE(CASE WHEN p_country_code OPERATOR(pg_catalog.=) '' THEN NULL ELSE p_country_code END, '+86')
                         OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p_number) END
$$;

GRANT ALL ON FUNCTION sms.phone_key(p_country_code text, p_number text) TO sms_producer;
GRANT ALL ON FUNCTION sms.phone_key(p_country_code text, p_number text) TO sms_dispatcher;
