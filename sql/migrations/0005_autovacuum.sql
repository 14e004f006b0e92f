-- sms-dispatcher schema, version 5: keep the queue's statistics and visibility fresh.
-- Every job is updated several times within seconds; with the default scale factors a table holding
-- months of history would wait for millions of changes before autovacuum looks at it, and plans for
-- the claim and write-back would be made on stale statistics. Absolute thresholds instead: autovacuum
-- (once a minute at most, by its naptime) analyzes and vacuums after a few thousand changes.
ALTER TABLE sms.jobs SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000
);
ALTER TABLE sms.attempts SET (
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 50000
);
ALTER TABLE sms.throttle SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);
