-- Today's schema `sms`, one file per table, view and function: what a database migrated to the latest
-- version holds, readable without replaying sql/migrations/ in your head. The migrations stay as they
-- were applied (never edit one); these files are the current truth, and the test
-- `CurrentSchemaTests` builds one database from the migrations and one from this file and compares
-- their catalogs (columns, constraints, indexes, triggers, functions, views, grants), so the two never
-- drift. Changing a function: edit its file here, and copy the file into a new migration.
--
-- Loads as the schema's owner into an empty database: psql -v ON_ERROR_STOP=1 -f sql/schema/schema.sql
-- (the test reads the \ir lines below in this order). Function bodies are checked when called, not
-- when created, so a function may name a table loaded after it.
SET check_function_bodies = off;

\ir roles.sql

CREATE SCHEMA sms;
GRANT USAGE ON SCHEMA sms TO sms_producer;
GRANT USAGE ON SCHEMA sms TO sms_monitor;
GRANT USAGE ON SCHEMA sms TO sms_operator;
GRANT USAGE ON SCHEMA sms TO sms_dispatcher;

-- The jobs table's generated column phone_key is computed by it.
\ir functions/phone_key.sql

\ir tables/attempts.sql
\ir tables/channel_settings.sql
\ir tables/controls.sql
\ir tables/fraud_allowed.sql
\ir tables/fraud_baselines.sql
\ir tables/fraud_blocks.sql
\ir tables/fraud_counts.sql
\ir tables/fraud_state.sql
\ir tables/fraud_trusted.sql
\ir tables/fraud_verifications.sql
\ir tables/jobs.sql
\ir tables/key_locks.sql
\ir tables/leases.sql
\ir tables/rate_schedule.sql
\ir tables/schema_migrations.sql
\ir tables/throttle.sql
\ir tables/workers.sql

-- After the tables: sms.pause_message takes a row of sms.controls, triggers name sms.jobs.
\ir functions/announce.sql
\ir functions/apply_channel_defaults.sql
\ir functions/cancel_jobs.sql
\ir functions/claim_jobs.sql
\ir functions/client_key.sql
\ir functions/enqueue.sql
\ir functions/expire_paused_jobs.sql
\ir functions/fraud_allow.sql
\ir functions/fraud_decide.sql
\ir functions/fraud_disallow.sql
\ir functions/fraud_evaluate.sql
\ir functions/fraud_prune.sql
\ir functions/fraud_unblock.sql
\ir functions/fraud_verified.sql
\ir functions/mark_verified.sql
\ir functions/notify_jobs_inserted.sql
\ir functions/pause.sql
\ir functions/pause_message.sql
\ir functions/pause_of.sql
\ir functions/paused_channels.sql
\ir functions/phone_country.sql
\ir functions/phone_prefix.sql
\ir functions/purge_finished.sql
\ir functions/requeue_jobs.sql
\ir functions/rescue_expired_leases.sql
\ir functions/reserve_sends.sql
\ir functions/resume.sql
\ir functions/unproven_message.sql

\ir views/queue_stats.sql
