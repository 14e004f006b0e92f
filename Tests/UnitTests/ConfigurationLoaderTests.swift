import Foundation
import GenAuth
import SMSConfiguration
import SMSEngine
import SMSModel
import Testing

/// The loader without a process: environment dictionaries and temporary YAML files.
@Suite("Configuration loader")
struct ConfigurationLoaderTests {
    let minimal = ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "app"]

    func load(
        _ environment: [String: String], file: String? = nil, requireGenAuth: Bool = true
    ) async throws
        -> DaemonConfiguration
    {
        try await DaemonConfiguration.load(file: file, environment: environment, requireGenAuth: requireGenAuth).0
    }

    func error(_ environment: [String: String], file: String? = nil) async -> ConfigError? {
        do {
            _ = try await load(environment, file: file)
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            Issue.record("not a ConfigError: \(error)")
            return nil
        }
    }

    @Test func defaultsAndDurations() async throws {
        let config = try await load(minimal)
        let dispatcher = config.dispatcher
        #expect(dispatcher.genauth.host == "http://127.0.0.1:9" && dispatcher.genauth.appID == "app")
        #expect(dispatcher.genauth.timeout == .seconds(10) && dispatcher.genauth.accessKey == nil)
        #expect(dispatcher.claims.concurrency == 64 && dispatcher.claims.lease == .seconds(30))
        #expect(dispatcher.admission.throttleWindow == .seconds(60) && dispatcher.admission.rateLimit == 300)
        #expect(dispatcher.retention.maxAge == .seconds(30 * 86_400))
        #expect(dispatcher.triage.rules[.login].ttl == .seconds(600))
        #expect(config.describe("throttle.window") == "60" && config.describe("genauth.timeout") == "10.0")
        #expect(config.describe("database.url") == "<redacted>")
    }

    @Test func everyKeyIsDeclaredOnceAndDescribed() async throws {
        let config = try await load(minimal)
        let names = DaemonConfiguration.keySpecs.map(\.name)
        #expect(Set(names).count == names.count)
        // 43 keys of their own (12 of them the fraud guard's), 5 per channel for the defaults and each
        // of the 11 channels.
        #expect(names.count == 43 + 5 * 12)
        for name in names { #expect(config.describe(name) != "?", "\(name)") }
        let environment = Set(names.map(DaemonConfiguration.environmentName))
        #expect(environment.count == names.count && environment.contains("SMSD_GENAUTH_APP_ID"))
    }

    @Test("the fraud guard: the contract's defaults, its environment variables, and its keys are live")
    func fraudGuard() async throws {
        let defaults = try await load(minimal).dispatcher.admission.fraud
        #expect(defaults.mode == .enforce && defaults.limits == [10, 10, 50, 0])
        let config = try await load(
            minimal.merging([
                "SMSD_FRAUD_MODE": "monitor", "SMSD_FRAUD_PER_IP_HOUR": "3", "SMSD_FRAUD_PER_USER_HOUR": "0",
                "SMSD_FRAUD_PER_PREFIX_HOUR": "20", "SMSD_FRAUD_PER_COUNTRY_HOUR": "5000", "SMSD_FRAUD_BLOCK_MINUTES": "15",
                "SMSD_FRAUD_ANOMALY_MAX_VERIFIED": "0.1",
            ]) { $1 })
        let fraud = config.dispatcher.admission.fraud
        #expect(fraud.mode == .monitor && fraud.limits == [3, 0, 20, 5000])
        #expect(fraud.blockDuration == .seconds(900) && fraud.anomalyMaxVerified == 0.1)
        #expect(config.describe("fraud.block_minutes") == "15" && config.describe("fraud.mode") == "monitor")
        for key in DaemonConfiguration.keySpecs where key.name.hasPrefix("fraud.") && key.name != "fraud.evaluate_interval" {
            #expect(key.reload == .live, "\(key.name)")
        }
        let bad = await error(minimal.merging(["SMSD_FRAUD_MODE": "strict"]) { $1 })
        #expect(bad?.key == "fraud.mode" && bad?.message.contains("enforce, monitor, off") == true, "\(String(describing: bad))")
    }

    @Test("a channel's key falls back to the defaults' key")
    func channelRules() async throws {
        let config = try await load(
            minimal.merging([
                "SMSD_CHANNELS_DEFAULTS_TTL": "300", "SMSD_CHANNELS_CHANNEL_LOGIN_TTL": "60",
                "SMSD_CHANNELS_CHANNEL_REGISTER_ENABLED": "false", "SMSD_CHANNELS_DEFAULTS_MAX_ATTEMPTS": "3",
            ]) { $1 })
        let rules = config.dispatcher.triage.rules
        #expect(rules[.login].ttl == .seconds(60) && rules[.register].ttl == .seconds(300))
        #expect(!rules[.register].enabled && rules[.login].enabled)
        #expect(rules[.verifyMFA].maxAttempts == 3)
        #expect(config.describe("channels.CHANNEL_LOGIN.ttl") == "60.0")
        #expect(config.describe("channels.defaults.ttl") == "(per channel)")
    }

    @Test(
        "errors name the key and say what is wrong",
        arguments: [
            (["SMSD_CONCURRENCY": "lots"], "concurrency", "whole number"),
            (["SMSD_CONCURRENCY": "0"], "concurrency", "between 1 and 4096"),
            (["SMSD_GENAUTH_TIMEOUT": "nan"], "genauth.timeout", "must be a number"),
            (["SMSD_GENAUTH_HEADER_FAMILY": "okta"], "genauth.header_family", "genauth or authing"),
            (["SMSD_LOG_LEVEL": "loud"], "log.level", "one of trace"),
            (["SMSD_DELIVERY_POLICY": "maybe"], "delivery.policy", "at-least-once or at-most-once"),
            (["SMSD_CONCURENCY": "8"], "SMSD_CONCURENCY", "unknown environment variable"),
            (["SMSD_LEASE_DURATION": "5", "SMSD_HEARTBEAT_INTERVAL": "5"], "lease.duration", "twice heartbeat.interval"),
            (["SMSD_RETRY_BASE_DELAY": "10", "SMSD_RETRY_MAX_DELAY": "5"], "retry.max_delay", "below retry.base_delay"),
            (["SMSD_GENAUTH_ACCESS_KEY_ID": "k"], "genauth.access_key_secret", "needs both"),
            (["SMSD_COUNTRIES_ALLOW": "+852,852"], "countries.allow", "not a country code"),
            (["SMSD_METRICS_LISTEN": "9464"], "metrics.listen", "host:port"),
            (["SMSD_GENAUTH_HOST": "ftp://x"], "genauth.host", "http:// or https://"),
            (["SMSD_GENAUTH_APP_ID": "a\nb"], "genauth.app_id", "control character"),
            (["SMSD_CHANNELS_CHANNEL_LOGIN_PRIORITY": "40000"], "channels.CHANNEL_LOGIN.priority", "between"),
            // Issue 26: a job whose daemon died during its call must be retried while GenAuth can
            // still prove that call: timeout 10 + lease 30 + rescue 10 + 3 s to claim and call >= 30 s.
            (["SMSD_THROTTLE_WINDOW": "30"], "lease.duration", "must be less than 30.0 s"),
        ])
    func errors(overrides: [String: String], key: String, message: String) async {
        let error = await error(minimal.merging(overrides) { $1 })
        #expect(error?.key == key, "\(String(describing: error))")
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
    }

    @Test func genAuthIsOnlyRequiredToSend() async throws {
        let error = await error([:])
        #expect(error?.key == "genauth.host" && error?.message.contains("is required") == true)
        let config = try await load([:], requireGenAuth: false)
        #expect(config.dispatcher.databaseURL == "postgresql:///sms")
    }

    @Test("a YAML file is read under the environment, and a misspelt key in it is refused")
    func yamlFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-unit-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try """
        genauth:
          host: http://127.0.0.1:9
          app_id: from-file
          access_key_id: id
          access_key_secret: secret
        concurrency: 8
        channels:
          CHANNEL_LOGIN:
            coalesce: false
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let config = try await load(["SMSD_GENAUTH_APP_ID": "from-env"], file: file)
        #expect(config.dispatcher.genauth.appID == "from-env" && config.dispatcher.claims.concurrency == 8)
        #expect(config.dispatcher.genauth.accessKey == .init(id: "id", secret: "secret"))
        #expect(!config.dispatcher.triage.rules[.login].coalesce && config.dispatcher.triage.rules[.register].coalesce)
        #expect(config.describe("genauth.access_key_secret") == "<redacted>")

        try "genauth:\n  host: http://127.0.0.1:9\n  app_id: a\n  appid_typo: b\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        let typo = await error([:], file: file)
        #expect(typo?.key == "genauth.appid_typo" && typo?.message.contains("keys in genauth") == true)
    }

    @Test("a secret written in a file every local user may read is warned about, naming the key; 0600 or no secret: no warning")
    func secretsInAReadableFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-unit-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        func warnings(_ text: String, mode: Int, environment: [String: String] = [:]) async throws -> [String] {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
            return try await DaemonConfiguration.load(file: file, environment: environment, requireGenAuth: false).1.warnings
        }
        let secret = "genauth:\n  app_secret: s3cret\n"
        let readable = try await warnings(secret, mode: 0o644)
        #expect(readable.count == 1 && readable[0].hasPrefix("genauth.app_secret is set in") && !readable[0].contains("s3cret"))
        #expect(try await warnings(secret, mode: 0o600).isEmpty)
        let withPassword = "database:\n  url: postgresql://app:pw@db/sms\n"
        #expect(try await warnings(withPassword, mode: 0o644).first?.hasPrefix("database.url is set in") == true)
        #expect(try await warnings("database:\n  url: postgresql://app@db/sms\n", mode: 0o644).isEmpty, "no password, no secret")
    }

    /// Issue 26: at-most-once never retries such a call, so the check does not apply; a shorter lease does it.
    @Test func aShortWindowNeedsAShortLeaseUnderAtLeastOnce() async throws {
        _ = try await load(minimal.merging(["SMSD_THROTTLE_WINDOW": "30", "SMSD_DELIVERY_POLICY": "at-most-once"]) { $1 })
        _ = try await load(
            minimal.merging([
                "SMSD_THROTTLE_WINDOW": "30", "SMSD_LEASE_DURATION": "11",
                "SMSD_LEASE_RESCUE_INTERVAL": "4",
            ]) { $1 })
    }

    @Test("a drain waits at least as long as a call started at its last moment needs")
    func drainLimit() {
        var claims = ClaimLoop.Configuration()
        claims.shutdownGrace = .seconds(10)
        claims.callTimeout = .seconds(10)
        #expect(claims.drainLimit == .milliseconds(11_500), "a call may start up to 1 s into the drain and take its 10 s")
        claims.shutdownGrace = .seconds(20)
        #expect(claims.drainLimit == .seconds(20))
    }
}
