# sms-dispatcher. `make test` and `make demo` install what is missing (as root, from Debian's packages),
# build once, start a throwaway PostgreSQL on 127.0.0.1 and stop it again.
SWIFT ?= swift
PREFIX ?= /usr/local
DESTDIR ?=
CONFIGURATION ?= debug

.PHONY: all deps build release test soak demo bench install install-files clean format format-check

all: build

deps:
	@bash scripts/ensure-deps.sh

build: deps
	$(SWIFT) build --build-tests

release: deps
	$(SWIFT) build -c release --product sms-dispatcher
	$(SWIFT) build -c release --product genauth-sandbox

# Figures, not tests: see README "Performance". BENCH_ARGS=--quick for a smoke run, or e.g.
# BENCH_ARGS="--jobs 20000 --scenarios drain,peer". Two throwaway clusters: a durable one (fsync,
# synchronous_commit, full_page_writes on, as production runs) for every scenario, and one with fsync
# off for the second column of the drain and latency figures.
BENCH_ARGS ?=
bench: release
	$(SWIFT) build -c release --product sms-bench
	SMSD_TEST_PG_STATEMENTS=1 bash scripts/with-postgres.sh bash -c 'SMSD_BENCH_FAST_ADMIN_URL=$$SMSD_TEST_ADMIN_URL \
		SMSD_TEST_PG_PORT= SMSD_TEST_PG_DURABLE=1 bash scripts/with-postgres.sh "$$0" --bin "$$1" $$2' \
		"$$($(SWIFT) build -c release --show-bin-path)/sms-bench" "$$($(SWIFT) build -c release --show-bin-path)" "$(BENCH_ARGS)"

# The test command CI runs: unit tests, then PostgreSQL, HTTP and process tests against a throwaway
# cluster and the real genauth-sandbox. Tests run on their own, after the rest: the two that restart or
# stop that cluster (beside the others they would cut their connections too, a test's own, not only
# its daemon's), and the cluster rate limit measured per second at the sandbox (its bound holds while
# each call leaves within a tenth of a second of its slot; 40 other tests on 2 cores stretch that).
# The randomized fault soak (SoakTests) restarts, stops and starts the cluster too: it runs last, alone,
# for 3 minutes with a fixed seed; `make soak MINUTES=N SEED=S` runs it on its own (a random seed unless
# given; the seed is printed, so a run can be repeated).
RESTARTS_CLUSTER = databaseRestarts
STOPS_CLUSTER = databaseDownPastTheProofWindow
RATE_LIMIT = rateLimit
SOAK = SoakTests
test: build
	bash scripts/with-postgres.sh bash -c '$(SWIFT) test --skip-build --skip "$(RESTARTS_CLUSTER)|$(STOPS_CLUSTER)|$(RATE_LIMIT)|$(SOAK)" \
		&& $(SWIFT) test --skip-build --filter $(RATE_LIMIT) && $(SWIFT) test --skip-build --filter $(RESTARTS_CLUSTER) \
		&& $(SWIFT) test --skip-build --filter $(STOPS_CLUSTER) \
		&& SMSD_SOAK_MINUTES=3 SMSD_SOAK_SEED=26 $(SWIFT) test --skip-build --filter $(SOAK)'

MINUTES ?= 10
SEED ?=
soak: build
	SMSD_SOAK_MINUTES=$(MINUTES) SMSD_SOAK_SEED=$(SEED) bash scripts/with-postgres.sh $(SWIFT) test --skip-build --filter $(SOAK)

# The code's layout is swift-format's (.swift-format); CI refuses code it would change.
FORMATTED = Sources Tests Package.swift sql/EmbeddedMigrations.swift
format:
	$(SWIFT) format format --in-place --recursive --parallel $(FORMATTED)

format-check:
	$(SWIFT) format lint --strict --recursive --parallel $(FORMATTED)

demo: deps
	$(SWIFT) build --product sms-dispatcher
	$(SWIFT) build --product genauth-sandbox
	bash scripts/with-postgres.sh bash scripts/demo.sh "$$($(SWIFT) build --show-bin-path)"

# `install` builds the release and installs it; `install-files BIN=<dir>` installs from a directory that
# already holds a built sms-dispatcher (the tests install the debug build so).
install: release
	$(MAKE) install-files BIN="$$($(SWIFT) build -c release --show-bin-path)"

# Secrets (credentials/, 0600, read by systemd as root for LoadCredential=) reach the service alone.
# The unit runs as a DynamicUser, in no group of ours: it reads the configuration as "others", so the
# file (which holds no secrets) is 0644. An operator's existing file is kept, with a warning if the
# service cannot read it (check-config would exit 78, which systemd does not restart).
CONFIG_FILE = $(DESTDIR)/etc/sms-dispatcher/sms-dispatcher.yaml
install-files:
	@test -n "$(BIN)" && test -x "$(BIN)/sms-dispatcher" || \
		{ echo "install-files: BIN=<directory holding a built sms-dispatcher> is required (got '$(BIN)')" >&2; exit 2; }
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/migrations" \
		"$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/schema/tables" \
		"$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/schema/functions" \
		"$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/schema/views" \
		"$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher" "$(DESTDIR)/etc/sms-dispatcher" \
		"$(DESTDIR)$(PREFIX)/lib/systemd/system"
	install -d -m 0700 "$(DESTDIR)/etc/sms-dispatcher/credentials"
	install -m 0755 "$(BIN)/sms-dispatcher" "$(DESTDIR)$(PREFIX)/bin/"
	# The binary carries its migrations; the SQL is installed to be read (today's schema in sql/schema/).
	install -m 0644 sql/migrations/*.sql "$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/migrations/"
	install -m 0644 sql/schema/*.sql "$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/schema/"
	for part in tables functions views; do \
		install -m 0644 sql/schema/$$part/*.sql "$(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/schema/$$part/"; \
	done
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/sms-dispatcher.service \
		> "$(DESTDIR)$(PREFIX)/lib/systemd/system/sms-dispatcher.service"
	install -d "$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/docs/decisions" "$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/docs/history"
	install -m 0644 README.md CHANGELOG.md config/grafana-dashboard.json "$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/"
	install -m 0644 docs/*.md "$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/docs/"
	install -m 0644 docs/decisions/*.md "$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/docs/decisions/"
	install -m 0644 docs/history/*.md "$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/docs/history/"
	for secret in genauth-app-secret genauth-access-key-secret database-url; do \
		test -e "$(DESTDIR)/etc/sms-dispatcher/credentials/$$secret" || \
			install -m 0600 /dev/null "$(DESTDIR)/etc/sms-dispatcher/credentials/$$secret"; \
	done
	@if test -e "$(CONFIG_FILE)"; then \
		if test -z "$$(find "$(CONFIG_FILE)" -maxdepth 0 -perm -o=r)" \
		   || test -z "$$(find "$(DESTDIR)/etc/sms-dispatcher" -maxdepth 0 -perm -o=x)"; then \
			echo "warning: $(CONFIG_FILE) is not readable by others ($$(stat -c '%A %U:%G' "$(CONFIG_FILE)")," \
				"directory $$(stat -c '%A' "$(DESTDIR)/etc/sms-dispatcher")): the service runs as a systemd" \
				"DynamicUser and cannot read it, so it will not start (exit 78). Keep secrets in" \
				"/etc/sms-dispatcher/credentials/ and run: chmod 0644 $(CONFIG_FILE); chmod 0755 $(DESTDIR)/etc/sms-dispatcher" >&2; \
		else echo "kept the existing $(CONFIG_FILE)"; fi; \
	else install -m 0644 config/sms-dispatcher.yaml "$(CONFIG_FILE)"; fi

clean:
	rm -rf .build
