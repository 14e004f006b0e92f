-- sms-dispatcher schema, version 2: channel rules and throttling.

-- The phone's identity for throttling, coalescing and caps: country code (+86 when none) and number,
-- so 13800138000 and +86/13800138000 are the same phone.
ALTER TABLE sms.jobs
    ADD COLUMN phone_key text GENERATED ALWAYS AS (COALESCE(NULLIF(phone_country_code, ''), '+86') || ' ' || phone_number) STORED,
    -- How often the job was put back because its phone+channel window was still open.
    ADD COLUMN deferrals smallint NOT NULL DEFAULT 0;

-- Coalescing: is there a newer job for this phone and channel still to send?
CREATE INDEX jobs_phone_channel_open_idx ON sms.jobs (phone_key, channel, id) WHERE state IN ('pending', 'running');
-- Caps: what was sent to this phone lately.
CREATE INDEX jobs_phone_sent_idx ON sms.jobs (phone_key, sent_at) WHERE state = 'sent';

-- One row per phone and channel: until when the next SMS must wait, and the job holding the slot.
-- Reserved (atomically, for the whole cluster) before the API call; moved to the call's end + window
-- when it was sent; released when the call did not send.
CREATE TABLE sms.throttle (
    phone_key    text NOT NULL,
    channel      text NOT NULL,
    window_until timestamptz NOT NULL,
    job_id       bigint NOT NULL,
    PRIMARY KEY (phone_key, channel)
);
CREATE INDEX throttle_job_idx ON sms.throttle (job_id);

-- Channel settings the daemons publish from their configuration, for the insert trigger below.
CREATE TABLE sms.channel_settings (
    channel          text PRIMARY KEY,
    default_priority smallint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A job inserted with priority 0 (the column default) takes its channel's configured priority.
CREATE FUNCTION sms.apply_channel_defaults() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.priority = 0 THEN
        NEW.priority := COALESCE((SELECT s.default_priority FROM sms.channel_settings s WHERE s.channel = NEW.channel), 0);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER jobs_channel_defaults BEFORE INSERT ON sms.jobs
    FOR EACH ROW EXECUTE FUNCTION sms.apply_channel_defaults();

-- Crash safety (see sms.rescue_expired_leases in version 3).
ALTER TABLE sms.jobs
    -- Set (in the same statement that reserves the phone+channel slot) just before the API call goes
    -- out, cleared by the write-back. A rescued job with sending_at set may or may not have been sent.
    ADD COLUMN sending_at timestamptz NULL,
    -- The last call's outcome is unknown (its worker died during it). A retry that GenAuth answers with
    -- "one SMS per phone per channel per window" then proves the earlier call went through.
    ADD COLUMN uncertain boolean NOT NULL DEFAULT false;

-- Reserves the phone+channel window for each candidate job, for the whole cluster at once:
--   granted  the job may be sent now (its slot is reserved for p_window seconds, extended on send);
--   deferred the window is open until r_until: try again then;
--   capped   the phone reached a cap across all channels (r_detail names it).
-- Per-phone advisory locks, taken in key order so two daemons cannot deadlock, make the window check,
-- the cap count and the reservation one atomic step per phone. Granted jobs are marked
-- `sending_at = now()` in the same transaction: their calls go out next.
CREATE FUNCTION sms.reserve_sends(
    p_job_ids bigint[], p_phone_keys text[], p_channels text[], p_window float8, p_hour_cap int, p_day_cap int)
RETURNS TABLE (r_job_id bigint, r_verdict text, r_until timestamptz, r_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_until timestamptz;
    v_holder bigint;
    v_hour int;
    v_day int;
    v_granted bigint[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 7212330012))
    FROM (SELECT DISTINCT unnest(p_phone_keys) AS k ORDER BY 1) keys;

    FOR i IN 1 .. COALESCE(array_length(p_job_ids, 1), 0) LOOP
        r_job_id := p_job_ids[i];
        r_until := NULL;
        r_detail := NULL;

        SELECT t.window_until, t.job_id INTO v_until, v_holder
        FROM sms.throttle t WHERE t.phone_key = p_phone_keys[i] AND t.channel = p_channels[i];
        IF v_until IS NOT NULL AND v_until > now() AND v_holder <> r_job_id THEN
            r_verdict := 'deferred';
            r_until := v_until;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF p_hour_cap > 0 OR p_day_cap > 0 THEN
            SELECT count(*) FILTER (WHERE s.sent_at > now() - interval '1 hour'), count(*)
            INTO v_hour, v_day
            FROM sms.jobs s
            WHERE s.phone_key = p_phone_keys[i] AND s.state = 'sent' AND s.sent_at > now() - interval '1 day';
            SELECT v_hour + count(*), v_day + count(*) INTO v_hour, v_day
            FROM sms.throttle t JOIN sms.jobs j ON j.id = t.job_id
            WHERE t.phone_key = p_phone_keys[i] AND t.job_id <> r_job_id AND j.state = 'running';
            IF p_hour_cap > 0 AND v_hour >= p_hour_cap THEN
                r_verdict := 'capped';
                r_detail := format('per-phone cap reached: %s SMS in the last hour across all channels (caps.per_phone_hour = %s)', v_hour, p_hour_cap);
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF p_day_cap > 0 AND v_day >= p_day_cap THEN
                r_verdict := 'capped';
                r_detail := format('per-phone cap reached: %s SMS in the last day across all channels (caps.per_phone_day = %s)', v_day, p_day_cap);
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;

        INSERT INTO sms.throttle AS t (phone_key, channel, window_until, job_id)
        VALUES (p_phone_keys[i], p_channels[i], now() + make_interval(secs => p_window), r_job_id)
        ON CONFLICT (phone_key, channel)
        DO UPDATE SET window_until = EXCLUDED.window_until, job_id = EXCLUDED.job_id;
        v_granted := v_granted || r_job_id;
        r_verdict := 'granted';
        RETURN NEXT;
    END LOOP;

    UPDATE sms.jobs SET sending_at = now() WHERE id = ANY (v_granted);
END;
$$;

-- queue_stats gains `deferred`: pending jobs waiting for their phone+channel window.
CREATE OR REPLACE VIEW sms.queue_stats AS
SELECT
    channel,
    state,
    count(*) AS jobs,
    count(*) FILTER (WHERE state = 'pending' AND run_at <= now()) AS due,
    extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending'))::double precision
        AS oldest_pending_age_s,
    count(*) FILTER (WHERE state = 'sent' AND sent_at > now() - interval '1 minute') AS sent_last_minute,
    count(*) FILTER (WHERE state = 'sent' AND sent_at > now() - interval '1 hour') AS sent_last_hour,
    count(*) FILTER (WHERE state = 'pending' AND deferrals > 0 AND run_at > now()) AS deferred
FROM sms.jobs
GROUP BY channel, state;

ALTER TABLE sms.workers
    ADD COLUMN deferred bigint NOT NULL DEFAULT 0,
    ADD COLUMN superseded bigint NOT NULL DEFAULT 0;
