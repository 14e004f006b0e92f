#!/usr/bin/env bash
# The demo, run by `make demo` inside scripts/with-postgres.sh: the sandbox on loopback, a migrated
# database, a realistic mix of jobs (valid, invalid, expiring, flaky), one daemon until they settle,
# then `status`. Everything started here is stopped on exit.
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
work=$(mktemp -d /tmp/smsd-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

psql "$SMSD_TEST_ADMIN_URL" -qc "CREATE DATABASE sms_demo"
export SMSD_DATABASE_URL="postgresql://postgres@127.0.0.1:$SMSD_TEST_PG_PORT/sms_demo"
"$bin/sms-dispatcher" migrate

"$bin/genauth-sandbox" --port 0 --latency-ms 40 --hang-seconds 4 >"$work/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'listening on' "$work/sandbox.log" && break; sleep 0.1; done
export SMSD_GENAUTH_HOST=$(sed -n 's/.*listening on //p' "$work/sandbox.log")
[ -n "$SMSD_GENAUTH_HOST" ] || { cat "$work/sandbox.log"; exit 1; }
export SMSD_GENAUTH_APP_ID=demo-app SMSD_RETRY_BASE_DELAY=0.5 SMSD_RETRY_MAX_DELAY=2 SMSD_GENAUTH_TIMEOUT=2 SMSD_HEARTBEAT_INTERVAL=1
echo "sandbox: $SMSD_GENAUTH_HOST"

echo "enqueueing: 300 login/MFA codes, 12 flaky numbers, 6 invalid rows, 2 expired, 1 international,"
echo "           3 resends for one phone, 6 channels for another"
psql "$SMSD_DATABASE_URL" -q <<'SQL'
INSERT INTO sms.jobs (channel, phone_number, priority, metadata)
SELECT (ARRAY['CHANNEL_LOGIN','CHANNEL_VERIFY_MFA','CHANNEL_REGISTER','CHANNEL_RESET_PASSWORD','CHANNEL_BIND_PHONE'])[1 + g % 5],
       '13' || (5 + g % 5)::text || lpad((g * 7919 % 100000000)::text, 8, '0'),
       CASE WHEN g % 5 = 1 THEN 10 ELSE 0 END,
       jsonb_build_object('user_id', g)
FROM generate_series(1, 300) g;
-- Flaky numbers of the sandbox: 17K000N####, kind K failing the first N calls.
INSERT INTO sms.jobs (channel, phone_number, max_attempts) VALUES
  ('CHANNEL_LOGIN', '17100011001', 5), ('CHANNEL_LOGIN', '17100021002', 5),   -- body 500, then fine
  ('CHANNEL_LOGIN', '17200011003', 5), ('CHANNEL_LOGIN', '17200021004', 5),   -- HTTP 503, then fine
  ('CHANNEL_LOGIN', '17300011005', 5), ('CHANNEL_LOGIN', '17400011006', 5),   -- HTTP 429, timeout
  ('CHANNEL_LOGIN', '17500011007', 5), ('CHANNEL_LOGIN', '17500011008', 5),   -- body 601 (SMS provider)
  ('CHANNEL_LOGIN', '17000001009', 5), ('CHANNEL_LOGIN', '17000001010', 5),   -- permanent 400
  ('CHANNEL_LOGIN', '17100001011', 3), ('CHANNEL_LOGIN', '17100001012', 3);   -- always 500: gives up
-- Producer mistakes: rejected with a message, never sent.
INSERT INTO sms.jobs (channel, phone_number, phone_country_code) VALUES
  ('CHANNEL_LOGIN', '138-0013-8000', NULL), ('CHANNEL_LOGIN', '1380013800', NULL),
  ('CHANNEL_LOGIN', '13800138000', '86'), ('CHANNEL_LOGIN', '+8613800138000', NULL),
  ('CHANNEL_LOGIN', '１３８００１３８０００', NULL), ('CHANNEL_LOGIN', '', NULL);
INSERT INTO sms.jobs (channel, phone_number, expires_at) VALUES
  ('CHANNEL_LOGIN', '13900000001', now() - interval '5 minutes'),
  ('CHANNEL_VERIFY_MFA', '13900000002', now() - interval '1 second');
INSERT INTO sms.jobs (channel, phone_number, phone_country_code) VALUES ('CHANNEL_LOGIN', '2025550123', '+1');
-- A user tapping "resend" three times: only the newest is sent, the others are superseded.
INSERT INTO sms.jobs (channel, phone_number, metadata) VALUES
  ('CHANNEL_LOGIN', '13912345678', '{"tap": 1}'), ('CHANNEL_LOGIN', '13912345678', '{"tap": 2}'),
  ('CHANNEL_LOGIN', '13912345678', '{"tap": 3}');
-- One phone on six channels within the hour: the sixth hits the per-phone cap (5 an hour).
INSERT INTO sms.jobs (channel, phone_number)
SELECT c, '13912340000' FROM unnest(ARRAY['CHANNEL_LOGIN','CHANNEL_REGISTER','CHANNEL_RESET_PASSWORD',
                                          'CHANNEL_BIND_PHONE','CHANNEL_BIND_MFA','CHANNEL_VERIFY_MFA']) c;
SQL

"$bin/sms-dispatcher" run >"$work/daemon.log" 2>&1 &
daemon=$!
pids+=($daemon)
start=$(date +%s%N)
for _ in $(seq 1 600); do
    left=$(psql "$SMSD_DATABASE_URL" -tAc "SELECT count(*) FROM sms.jobs WHERE state IN ('pending','running')")
    [ "$left" = 0 ] && break
    kill -0 "$daemon" 2>/dev/null || { echo "the daemon died:"; cat "$work/daemon.log"; exit 1; }
    sleep 0.2
done
end=$(date +%s%N)
echo "settled in $(( (end - start) / 1000000 )) ms ($left unfinished)"
echo
sleep 1.2  # one more heartbeat, so the worker row's counters are current
"$bin/sms-dispatcher" status
echo
echo "A few rows:"
psql "$SMSD_DATABASE_URL" -P pager=off -c "
  SELECT id, channel, phone_number, coalesce(phone_country_code, '') AS cc, state, attempts, status_code, api_code,
         left(coalesce(message, ''), 60) AS message, left(coalesce(request_id, ''), 12) AS request_id
  FROM sms.jobs WHERE id IN (1, 2) OR phone_number LIKE '17%' OR state IN ('rejected', 'expired', 'superseded')
     OR phone_country_code = '+1' OR phone_number LIKE '139123%'
  ORDER BY id"
kill -TERM "$daemon"
wait "$daemon" && echo "daemon stopped cleanly (exit 0)"
echo
echo "daemon log:"
cat "$work/daemon.log"
[ "$left" = 0 ]
