# sms-dispatcher. `make test` and `make demo` install what is missing (as root, from Debian's packages),
# build once, start a throwaway PostgreSQL on 127.0.0.1 and stop it again.
SWIFT ?= swift
PREFIX ?= /usr/local
DESTDIR ?=
CONFIGURATION ?= debug

.PHONY: all deps build release test demo bench install clean

all: build

deps:
	@bash scripts/ensure-deps.sh

build: deps
	$(SWIFT) build --build-tests

release: deps
	$(SWIFT) build -c release --product sms-dispatcher
	$(SWIFT) build -c release --product genauth-sandbox

# Figures, not tests: see README "Performance". BENCH_ARGS=--quick for a smoke run, or e.g.
# BENCH_ARGS="--jobs 20000 --scenarios drain,ceiling".
BENCH_ARGS ?=
bench: release
	$(SWIFT) build -c release --product sms-bench
	bash scripts/with-postgres.sh "$$($(SWIFT) build -c release --show-bin-path)/sms-bench" \
		--bin "$$($(SWIFT) build -c release --show-bin-path)" $(BENCH_ARGS)

# The test command CI runs: unit tests, then PostgreSQL, HTTP and process tests against a throwaway
# cluster and the real genauth-sandbox. The one test that restarts that cluster runs on its own,
# after the rest: beside them it would cut their connections too (a test's own, not only its daemon's).
RESTARTS_CLUSTER = databaseRestarts
test: build
	bash scripts/with-postgres.sh bash -c '$(SWIFT) test --skip-build --skip $(RESTARTS_CLUSTER) \
		&& $(SWIFT) test --skip-build --filter $(RESTARTS_CLUSTER)'

demo: deps
	$(SWIFT) build --product sms-dispatcher
	$(SWIFT) build --product genauth-sandbox
	bash scripts/with-postgres.sh bash scripts/demo.sh "$$($(SWIFT) build --show-bin-path)"

install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql \
		$(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher $(DESTDIR)/etc/sms-dispatcher/credentials \
		$(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0755 "$$($(SWIFT) build -c release --show-bin-path)/sms-dispatcher" $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 sql/*.sql $(DESTDIR)$(PREFIX)/share/sms-dispatcher/sql/
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' systemd/sms-dispatcher.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/sms-dispatcher.service
	install -m 0644 README.md config/grafana-dashboard.json $(DESTDIR)$(PREFIX)/share/doc/sms-dispatcher/
	for secret in genauth-app-secret genauth-access-key-secret database-url; do \
		test -e $(DESTDIR)/etc/sms-dispatcher/credentials/$$secret || \
			install -m 0600 /dev/null $(DESTDIR)/etc/sms-dispatcher/credentials/$$secret; \
	done
	test -e $(DESTDIR)/etc/sms-dispatcher/sms-dispatcher.yaml || \
		install -m 0640 config/sms-dispatcher.yaml $(DESTDIR)/etc/sms-dispatcher/sms-dispatcher.yaml

clean:
	rm -rf .build
