import Foundation
import Logging
import SMSConfiguration
import SMSEngine
import SMSModel
import Testing

/// What a reload makes of a newly loaded configuration: each key's class, and the diff derived from
/// it. Configurations come from the real loader (environment dictionaries), as the daemon's do.
@Suite("Configuration reload")
struct ConfigurationReloadTests {
    let minimal = ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "app"]

    func load(_ extra: [String: String] = [:]) async throws -> DaemonConfiguration {
        try await DaemonConfiguration.load(file: nil, environment: minimal.merging(extra) { $1 }).0
    }

    @Test("every key has a class; what needs new connections, sockets or identity is restart-only")
    func classes() {
        let restart = [
            "database.url", "genauth.host", "genauth.app_id", "genauth.app_secret", "genauth.header_family",
            "genauth.timeout", "genauth.access_key_id", "genauth.access_key_secret", "concurrency",
            "poll_interval", "heartbeat.interval", "lease.duration", "lease.rescue_interval",
            "shutdown.grace", "worker.id", "metrics.listen", "throttle.window", "delivery.policy",
            "retention.max_age_days", "retention.batch_size", "retention.interval", "fraud.evaluate_interval",
        ]
        let live = [
            "rate_limit.requests_per_second", "caps.per_phone_hour", "caps.per_phone_day",
            "countries.international", "countries.allow", "breaker.failure_threshold", "breaker.cool_down",
            "retry.base_delay", "retry.max_delay", "log.level", "channels.defaults.enabled",
            "channels.CHANNEL_LOGIN.ttl", "channels.CHANNEL_REGISTER.priority",
            "channels.CHANNEL_LOGIN.coalesce", "channels.defaults.max_attempts",
            // The reservation reads the guard's settings for each batch, the fraud watch for each round.
            "fraud.mode", "fraud.per_ip_hour", "fraud.per_user_hour", "fraud.per_prefix_hour",
            "fraud.per_country_hour", "fraud.anomaly_factor", "fraud.anomaly_min_requests",
            "fraud.anomaly_max_verified", "fraud.block_minutes", "fraud.baseline_hours", "fraud.trust_verified_days",
        ]
        for key in restart { #expect(DaemonConfiguration.reloadClass(of: key) == .restart, "\(key)") }
        for key in live { #expect(DaemonConfiguration.reloadClass(of: key) == .live, "\(key)") }
        // Every channel key is live; the rest are listed above, so a new key must be classified here too.
        let named = Set(restart + live)
        for spec in DaemonConfiguration.keySpecs where !spec.name.hasPrefix("channels.") {
            #expect(named.contains(spec.name), "\(spec.name) (\(spec.reload)) is not in this test's lists")
        }
        for spec in DaemonConfiguration.keySpecs where spec.name.hasPrefix("channels.") { #expect(spec.reload == .live) }
        #expect(DaemonConfiguration.reloadClass(of: "no.such_key") == nil)
    }

    @Test("the same file twice changes nothing")
    func unchanged() async throws {
        let running = try await load()
        let change = running.change(to: try await load())
        #expect(change.live.isEmpty && change.needsRestart.isEmpty)
    }

    @Test("live keys are taken, restart-only keys are named and keep their running values")
    func mixed() async throws {
        let running = try await load(["SMSD_DATABASE_URL": "postgresql:///a", "SMSD_CONCURRENCY": "64"])
        let new = try await load([
            "SMSD_DATABASE_URL": "postgresql://user:secret@db/b", "SMSD_CONCURRENCY": "8",
            "SMSD_METRICS_LISTEN": "127.0.0.1:9464", "SMSD_THROTTLE_WINDOW": "30", "SMSD_DELIVERY_POLICY": "at-most-once",
            "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "5", "SMSD_CAPS_PER_PHONE_HOUR": "1",
            "SMSD_COUNTRIES_INTERNATIONAL": "true", "SMSD_COUNTRIES_ALLOW": "+852,+1",
            "SMSD_BREAKER_FAILURE_THRESHOLD": "3", "SMSD_RETRY_BASE_DELAY": "0.5", "SMSD_LOG_LEVEL": "debug",
            "SMSD_CHANNELS_CHANNEL_LOGIN_ENABLED": "false",
        ])
        let change = running.change(to: new)
        #expect(change.needsRestart == ["database.url", "throttle.window", "concurrency", "delivery.policy", "metrics.listen"])
        #expect(
            Set(change.live) == [
                "rate_limit.requests_per_second", "caps.per_phone_hour", "countries.international",
                "countries.allow", "breaker.failure_threshold", "retry.base_delay", "log.level",
                "channels.CHANNEL_LOGIN.enabled",
            ])
        let applied = change.applied
        // Restart-only: as running.
        #expect(applied.dispatcher.databaseURL == "postgresql:///a" && applied.dispatcher.claims.concurrency == 64)
        #expect(applied.metricsListen == nil && applied.dispatcher.admission.throttleWindow == .seconds(60))
        #expect(applied.dispatcher.triage.policy == .atLeastOnce)
        // Live: as loaded.
        #expect(applied.dispatcher.admission.rateLimit == 5 && applied.dispatcher.admission.capPerPhoneHour == 1)
        #expect(
            applied.dispatcher.triage.rules.international
                && applied.dispatcher.triage.rules.allowedCountryCodes == ["+852", "+1"])
        #expect(applied.dispatcher.breaker.threshold == 3 && applied.dispatcher.triage.backoff.base == .milliseconds(500))
        #expect(applied.logLevel == .debug && !applied.dispatcher.triage.rules[.login].enabled)
        #expect(applied.dispatcher.triage.rules[.register].enabled)
    }

    @Test("a secret's change is seen (by value, not by its redacted display) and only named")
    func secrets() async throws {
        let running = try await load(["SMSD_GENAUTH_APP_SECRET": "one"])
        let change = running.change(to: try await load(["SMSD_GENAUTH_APP_SECRET": "two"]))
        #expect(change.needsRestart == ["genauth.app_secret"] && change.live.isEmpty)
        #expect(change.applied.appSecret == "one")
    }

    @Test("a defaults key changed on every channel is one name; a channel of its own keeps its value")
    func channelDefaults() async throws {
        let running = try await load(["SMSD_CHANNELS_CHANNEL_LOGIN_TTL": "60"])
        let change = running.change(
            to: try await load([
                "SMSD_CHANNELS_DEFAULTS_TTL": "120",
                "SMSD_CHANNELS_CHANNEL_LOGIN_TTL": "60",
            ]))
        // Ten channels changed, CHANNEL_LOGIN kept its own: each named.
        #expect(change.live.count == Channel.allCases.count - 1 && !change.live.contains("channels.CHANNEL_LOGIN.ttl"))
        #expect(change.applied.dispatcher.triage.rules[.register].ttl == .seconds(120))
        #expect(change.applied.dispatcher.triage.rules[.login].ttl == .seconds(60))
        let all = try await load().change(to: try await load(["SMSD_CHANNELS_DEFAULTS_PRIORITY": "7"]))
        #expect(all.live == ["channels.*.priority"])
    }

    @Test("the engine's live settings follow the applied configuration; the window and policy stay")
    func liveSettings() async throws {
        let running = try await load()
        let change = running.change(to: try await load(["SMSD_CAPS_PER_PHONE_DAY": "3", "SMSD_THROTTLE_WINDOW": "58"]))
        let live = LiveSettings(change.applied.dispatcher)
        #expect(live.admission.capPerPhoneDay == 3 && live.admission.throttleWindow == .seconds(60))
        #expect(live != LiveSettings(running.dispatcher))
    }
}
