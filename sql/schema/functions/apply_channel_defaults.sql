-- The insert trigger also records who enqueued the job (the login role: the trigger runs as the
-- owner, and sms.enqueue as the owner too, but session_user stays the caller's login).
CREATE OR REPLACE FUNCTION sms.apply_channel_defaults() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_control sms.controls;
BEGIN
    IF NEW.priority = 0 THEN
        NEW.priority := COALESCE((SELECT s.default_priority FROM sms.channel_settings s WHERE s.channel = NEW.channel), 0);
    END IF;
    v_control := sms.pause_of(NEW.channel);
    IF v_control.channel IS NOT NULL THEN
        NEW.message := sms.pause_message(v_control);
    END IF;
    NEW.enqueued_by := session_user;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_channel_defaults BEFORE INSERT ON sms.jobs FOR EACH ROW EXECUTE FUNCTION sms.apply_channel_defaults();

REVOKE ALL ON FUNCTION sms.apply_channel_defaults() FROM PUBLIC;
