-- The operators' view of the queue, per channel and state: jobs, due now, the oldest pending job's age,
-- sent in the last minute and hour, deferred, and whether a pause holds the channel.
CREATE OR REPLACE VIEW sms.queue_stats AS
 SELECT jobs.channel,
    jobs.state,
    count(*) AS jobs,
    count(*) FILTER (WHERE ((jobs.state = 'pending'::text) AND (jobs.run_at <= now()))) AS due,
    (EXTRACT(epoch FROM (now() - min(jobs.created_at) FILTER (WHERE (jobs.state = 'pending'::text)))))::double precision AS oldest_pending_age_s,
    count(*) FILTER (WHERE ((jobs.state = 'sent'::text) AND (jobs.sent_at > (now() - '00:01:00'::interval)))) AS sent_last_minute,
    count(*) FILTER (WHERE ((jobs.state = 'sent'::text) AND (jobs.sent_at > (now() - '01:00:00'::interval)))) AS sent_last_hour,
    count(*) FILTER (WHERE ((jobs.state = 'pending'::text) AND (jobs.deferrals > 0) AND (jobs.run_at > now()))) AS deferred,
    ((sms.pause_of(jobs.channel)).channel IS NOT NULL) AS paused
   FROM sms.jobs
  GROUP BY jobs.channel, jobs.state;

GRANT SELECT ON TABLE sms.queue_stats TO sms_monitor;
