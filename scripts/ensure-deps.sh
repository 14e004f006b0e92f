#!/usr/bin/env bash
# Installs what building and testing need and is missing: PostgreSQL (server and libpq-dev) and
# pkg-config. Uses Debian's packages; a no-op when everything is there already.
set -euo pipefail
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# The unit file's checks (systemd-analyze security/verify) run in the tests.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The GenAuth client's TLS test makes its certificate with openssl.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The connection-pooler tests run Debian's PgBouncer in front of the test cluster.
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "ensure-deps: missing ${missing[*]}; install them (apt-get install -y ${missing[*]}) or run as root" >&2
        exit 1
    fi
    echo "ensure-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "ensure-deps: swift is not on PATH" >&2; exit 1; }
