-- Wake idle daemons as soon as producers insert. Statement-level: one notification per INSERT
-- statement however many rows it adds (and PostgreSQL folds repeats within a transaction).
CREATE OR REPLACE FUNCTION sms.notify_jobs_inserted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_notify('sms_jobs', '');
    RETURN NULL;
END;
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON sms.jobs FOR EACH STATEMENT EXECUTE FUNCTION sms.notify_jobs_inserted();
