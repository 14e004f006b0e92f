#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off: test data
# only, lost only if the machine crashes), then stops and deletes it whatever happens. The command sees:
#   SMSD_TEST_ADMIN_URL  a superuser URL to the cluster's `postgres` database
#   SMSD_TEST_PG_PORT, SMSD_TEST_PG_DATA, SMSD_TEST_PG_CTL  to restart it (fault tests)
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
# SMSD_TEST_PG_DURABLE=1: fsync, synchronous_commit and full-page writes on, as in production (benchmarks).
# SMSD_TEST_PG_STATEMENTS=1: preload pg_stat_statements, nested statements counted (the bench's figures).
set -euo pipefail
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "with-postgres: no PostgreSQL server found (run scripts/ensure-deps.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/smsd-pg.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
port=${SMSD_TEST_PG_PORT:-}
if [ -z "$port" ]; then
    # A free port, found by trying: bounded to 50 tries.
    for _ in $(seq 1 50); do
        candidate=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
    done
fi
[ -n "$port" ] || { echo "with-postgres: no free port found" >&2; exit 1; }
cleanup() {
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
# synchronous_commit stays on: a commit is written (not flushed) before it is acknowledged, so a crash of
# PostgreSQL alone (the fault suites' immediate stops) never loses an acknowledged commit, as in
# production; with it off, the last commits before a crash vanish, a fault production does not have.
durability="-c fsync=off -c synchronous_commit=on -c full_page_writes=off"
[ "${SMSD_TEST_PG_DURABLE:-0}" = 1 ] && durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
[ "${SMSD_TEST_PG_STATEMENTS:-0}" = 1 ] && durability="$durability -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $durability -c max_connections=300" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
export SMSD_TEST_ADMIN_URL="postgresql://postgres@127.0.0.1:$port/postgres"
export SMSD_TEST_PG_PORT="$port" SMSD_TEST_PG_DATA="$dir/data" SMSD_TEST_PG_CTL="$bindir/pg_ctl"
echo "with-postgres: throwaway cluster on 127.0.0.1:$port ($([ "${SMSD_TEST_PG_DURABLE:-0}" = 1 ] && echo durable || echo "fsync off"))" >&2
"$@"
