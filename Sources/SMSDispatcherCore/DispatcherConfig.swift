import Configuration
import Foundation
import Logging
import SystemPackage

/// Which header family carries the app id: GenAuth's `x-genauth-*` or the older Authing brand's `x-authing-*`.
public enum HeaderFamily: String, Sendable, CaseIterable {
    case genauth, authing

    public var appIdHeader: String { "x-\(rawValue)-app-id" }
}

/// The daemon's whole configuration, validated. Every field has a key in the YAML file
/// (`config/sms-dispatcher.yaml`) and an environment variable `SMSD_<KEY>` (dots and dashes as `_`);
/// secrets may also come from files in systemd's `$CREDENTIALS_DIRECTORY` named like
/// `genauth-app-secret`. Precedence: environment, then credentials, then the file, then the default.
public struct DispatcherConfig: Sendable {
    public var databaseURL = "postgresql:///sms"
    public var genauthHost = ""
    public var appID = ""
    public var appSecret: String? = nil
    public var headerFamily = HeaderFamily.genauth
    /// Seconds one API call may take; GenAuth's SDKs use 10.
    public var requestTimeout = 10.0
    /// Seconds between two SMS to one phone on one channel (GenAuth allows one a minute).
    public var throttleWindow = 60
    /// API calls in flight per daemon.
    public var concurrency = 64
    /// Seconds between polls when no NOTIFY arrives.
    public var pollInterval = 1.0
    public var retryBaseDelay = 2.0
    public var retryMaxDelay = 300.0
    public var heartbeatInterval = 5.0
    public var leaseDuration = 30.0
    public var rescueInterval = 10.0
    /// Seconds a shutdown waits for calls in flight.
    public var shutdownGrace = 10.0
    public var logLevel = Logger.Level.info
    /// Identifies this daemon in `locked_by` and `sms.workers`; default `<host>-<pid>-<random>`.
    public var workerID: String? = nil
    /// Per-channel rules; every channel has an entry.
    public var channelRules: [Channel: ChannelRule] = Dictionary(uniqueKeysWithValues: Channel.allCases.map { ($0, ChannelRule()) })
    /// Whether numbers outside mainland China (+86) may be sent at all.
    public var international = false
    /// With `international`, the country codes allowed; empty means all.
    public var allowedCountryCodes: [String] = []
    /// SMS per phone (all channels) per rolling hour / day; 0 disables the cap.
    public var capPerPhoneHour = 5
    public var capPerPhoneDay = 10
    /// API requests per second for the whole cluster (GenAuth's free tier allows 300); 0 disables.
    public var rateLimit = 300.0
    /// What a crash during an API call means for the job.
    public var deliveryPolicy = DeliveryPolicy.atLeastOnce
    /// Consecutive transient failures that open the circuit breaker (0 disables it).
    public var breakerThreshold = 10
    /// Seconds the breaker stays open before a probe call.
    public var breakerCoolDown = 10.0
    /// Management-token mode: both set means send-sms carries `authorization: Bearer <token>`.
    public var accessKeyID: String? = nil
    public var accessKeySecret: String? = nil
    /// Finished jobs (and their attempts) older than this many days are deleted; 0 keeps them.
    public var retentionDays = 30
    /// Rows deleted per statement, and seconds between retention runs.
    public var retentionBatchSize = 1000
    public var retentionInterval = 300.0
    /// `host:port` for the Prometheus endpoint; nil: off.
    public var metricsListen: String? = nil

    public init() {}

    public func rule(for channel: Channel) -> ChannelRule { channelRules[channel] ?? ChannelRule() }

    /// Every key the daemon reads, with what it is for: the source of `check-config` and of the
    /// "unknown key" check.
    public static let keys: [ConfigKeySpec] = baseKeys + ChannelRule.keys

    static let baseKeys: [ConfigKeySpec] = [
        .init("database.url", secret: true, "libpq connection string or URI (may hold a password)"),
        .init("genauth.host", "GenAuth app host base URL, e.g. https://example.genauth.ai"),
        .init("genauth.app_id", "GenAuth app id, sent in the app-id header"),
        .init("genauth.app_secret", secret: true, "GenAuth app secret"),
        .init("genauth.header_family", "genauth (x-genauth-app-id) or authing (x-authing-app-id)"),
        .init("genauth.timeout", "seconds one API call may take"),
        .init("throttle.window", "seconds between two SMS to one phone on one channel"),
        .init("concurrency", "API calls in flight per daemon"),
        .init("poll_interval", "seconds between polls when no notification arrives"),
        .init("retry.base_delay", "seconds before the first retry; doubles each attempt"),
        .init("retry.max_delay", "longest wait between two attempts, seconds"),
        .init("heartbeat.interval", "seconds between heartbeats (worker row, lease extension)"),
        .init("lease.duration", "seconds a claimed job stays leased without a heartbeat"),
        .init("lease.rescue_interval", "seconds between checks for expired leases"),
        .init("shutdown.grace", "seconds a shutdown waits for API calls in flight"),
        .init("log.level", "trace, debug, info, notice, warning, error or critical"),
        .init("worker.id", "this daemon's name in locked_by and sms.workers"),
        .init("countries.international", "send to numbers outside mainland China (+86)"),
        .init("countries.allow", "with international: the country codes allowed, e.g. [\"+852\", \"+1\"]; empty: all"),
        .init("caps.per_phone_hour", "SMS per phone across all channels per rolling hour (0: no cap)"),
        .init("caps.per_phone_day", "SMS per phone across all channels per rolling day (0: no cap)"),
        .init("rate_limit.requests_per_second", "API requests per second for the whole cluster (0: no limit)"),
        .init("delivery.policy", "at-least-once or at-most-once: what a crash during an API call means"),
        .init("breaker.failure_threshold", "consecutive transient API failures that open the circuit breaker (0: off)"),
        .init("breaker.cool_down", "seconds the breaker stays open before one probe call"),
        .init("genauth.access_key_id", "management-token mode: access key id"),
        .init("genauth.access_key_secret", secret: true, "management-token mode: access key secret"),
        .init("retention.max_age_days", "finished jobs and their attempts older than this are deleted (0: keep)"),
        .init("retention.batch_size", "rows deleted per statement"),
        .init("retention.interval", "seconds between retention runs (one daemon of the cluster at a time)"),
        .init("metrics.listen", "host:port of the Prometheus endpoint, e.g. 127.0.0.1:9464 (unset: off)"),
    ]

    /// Loads the configuration: the YAML file (if any), `$CREDENTIALS_DIRECTORY`, then `SMSD_*`
    /// environment variables. Throws `ConfigError` naming the key for anything missing or invalid.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                            requireGenAuth: Bool = true) async throws -> (DispatcherConfig, ConfigSources) {
        var providers: [any ConfigProvider] = []
        // A misspelt SMSD_ variable would silently do nothing: refuse it like an unknown file key.
        let knownNames = Set(keys.map { environmentName($0.name) } + ["SMSD_CONFIG", "SMSD_SQL_DIR"])
        if let unknown = environment.keys.sorted().first(where: {
            $0.hasPrefix("SMSD_") && !$0.hasPrefix("SMSD_TEST_") && !knownNames.contains($0)
        }) {
            throw ConfigError(key: unknown, "unknown environment variable; every key's variable is SMSD_ and the key in capitals with dots as underscores (see check-config, README)")
        }
        let secretNames = Set(keys.filter(\.secret).map { environmentName($0.name) })
        providers.append(EnvironmentVariablesProvider(
            environmentVariables: environment.filter { $0.key.hasPrefix("SMSD_") },
            secretsSpecifier: .dynamic { name, _ in secretNames.contains(name.uppercased()) }
        ).prefixKeys(with: ["smsd"]))
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            do {
                let credentials = try await DirectoryFilesProvider(directoryPath: FilePath(directory))
                // systemd credential names use dashes: genauth.app_secret → genauth-app-secret.
                providers.append(KeyMappingProvider(upstream: credentials) { key in
                    AbsoluteConfigKey([key.components.joined(separator: "-").replacingOccurrences(of: "_", with: "-")])
                })
            } catch {
                throw ConfigError(key: "CREDENTIALS_DIRECTORY", "cannot read credentials directory \(directory): \(error)")
            }
        }
        var yamlKeys: [String] = []
        if let file {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw ConfigError(key: "--config", "cannot read configuration file \(file)")
            }
            do {
                providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(file)))
                yamlKeys = try YAMLKeyLister.keys(inFile: file)
            } catch let error as ConfigError {
                throw error
            } catch {
                throw ConfigError(key: "--config", "configuration file \(file) is not valid YAML: \(error)")
            }
        }
        let known = Set(keys.map(\.name))
        if let unknown = yamlKeys.first(where: { !known.contains($0) }) {
            let section = unknown.split(separator: ".").first.map(String.init) ?? unknown
            let siblings = keys.map(\.name).filter { $0.hasPrefix(section + ".") && !$0.hasPrefix("channels.CHANNEL_") }
            throw ConfigError(key: unknown, "unknown key in \(file ?? "configuration file")"
                + (siblings.isEmpty ? "; `check-config` lists every key" : "; keys in \(section): \(siblings.joined(separator: ", "))"))
        }
        let reader = ConfigReader(providers: providers)
        let values = RawValues(reader: reader, specs: keys)

        var config = DispatcherConfig()
        try values.string("database.url").map { config.databaseURL = $0 }
        try values.string("genauth.host").map { config.genauthHost = $0 }
        try values.string("genauth.app_id").map { config.appID = $0 }
        config.appSecret = try values.string("genauth.app_secret")
        if let family = try values.string("genauth.header_family") {
            guard let parsed = HeaderFamily(rawValue: family.lowercased()) else {
                throw ConfigError(key: "genauth.header_family", "must be genauth or authing, not \"\(family)\"")
            }
            config.headerFamily = parsed
        }
        try values.double("genauth.timeout", in: 0.1...120).map { config.requestTimeout = $0 }
        try values.int("throttle.window", in: 1...86_400).map { config.throttleWindow = $0 }
        try values.int("concurrency", in: 1...4096).map { config.concurrency = $0 }
        try values.double("poll_interval", in: 0.05...3600).map { config.pollInterval = $0 }
        try values.double("retry.base_delay", in: 0.01...3600).map { config.retryBaseDelay = $0 }
        try values.double("retry.max_delay", in: 0.01...86_400).map { config.retryMaxDelay = $0 }
        try values.double("heartbeat.interval", in: 0.1...3600).map { config.heartbeatInterval = $0 }
        try values.double("lease.duration", in: 1...86_400).map { config.leaseDuration = $0 }
        try values.double("lease.rescue_interval", in: 0.1...3600).map { config.rescueInterval = $0 }
        try values.double("shutdown.grace", in: 0...3600).map { config.shutdownGrace = $0 }
        if let level = try values.string("log.level") {
            guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
                throw ConfigError(key: "log.level", "must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(level)\"")
            }
            config.logLevel = parsed
        }
        config.workerID = try values.string("worker.id")
        try values.bool("countries.international").map { config.international = $0 }
        if let codes = try values.stringArray("countries.allow") {
            for code in codes where !(code.hasPrefix("+") && (2...5).contains(code.count) && code.dropFirst().allSatisfy(\.isASCIIDigitCharacter)) {
                throw ConfigError(key: "countries.allow", "\"\(code)\" is not a country code like +852")
            }
            config.allowedCountryCodes = codes
        }
        try values.int("caps.per_phone_hour", in: 0...1000).map { config.capPerPhoneHour = $0 }
        try values.int("caps.per_phone_day", in: 0...10_000).map { config.capPerPhoneDay = $0 }
        try values.double("rate_limit.requests_per_second", in: 0...100_000).map { config.rateLimit = $0 }
        if let policy = try values.string("delivery.policy") {
            guard let parsed = DeliveryPolicy(rawValue: policy.lowercased()) else {
                throw ConfigError(key: "delivery.policy", "must be at-least-once or at-most-once, not \"\(policy)\"")
            }
            config.deliveryPolicy = parsed
        }
        try values.int("breaker.failure_threshold", in: 0...10_000).map { config.breakerThreshold = $0 }
        try values.double("breaker.cool_down", in: 0.1...3600).map { config.breakerCoolDown = $0 }
        config.accessKeyID = try values.string("genauth.access_key_id")
        config.accessKeySecret = try values.string("genauth.access_key_secret")
        if (config.accessKeyID == nil) != (config.accessKeySecret == nil) {
            throw ConfigError(key: config.accessKeyID == nil ? "genauth.access_key_id" : "genauth.access_key_secret",
                              "management-token mode needs both genauth.access_key_id and genauth.access_key_secret")
        }
        try values.int("retention.max_age_days", in: 0...3650).map { config.retentionDays = $0 }
        try values.int("retention.batch_size", in: 1...100_000).map { config.retentionBatchSize = $0 }
        try values.double("retention.interval", in: 1...86_400).map { config.retentionInterval = $0 }
        if let listen = try values.string("metrics.listen"), !listen.isEmpty {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                  (1...65535).contains(port), colon != listen.startIndex
            else {
                throw ConfigError(key: "metrics.listen", "must be host:port, e.g. 127.0.0.1:9464, not \"\(listen)\"")
            }
            config.metricsListen = listen
        }
        let defaults = try ChannelRule.read(scope: "defaults", base: ChannelRule(), values: values)
        for channel in Channel.allCases {
            config.channelRules[channel] = try ChannelRule.read(scope: channel.rawValue, base: defaults, values: values)
        }

        if config.retryMaxDelay < config.retryBaseDelay {
            throw ConfigError(key: "retry.max_delay", "must not be below retry.base_delay (\(config.retryBaseDelay))")
        }
        if config.leaseDuration <= config.heartbeatInterval * 2 {
            throw ConfigError(key: "lease.duration", "must exceed twice heartbeat.interval (\(config.heartbeatInterval) s), or live daemons lose their leases")
        }
        if requireGenAuth {
            try config.validateGenAuth()
        }
        return (config, values.sources)
    }

    /// The send path needs a host and an app id; `status` and `migrate` do not.
    public func validateGenAuth() throws {
        guard !genauthHost.isEmpty else {
            throw ConfigError(key: "genauth.host", "is required (set SMSD_GENAUTH_HOST or genauth.host)")
        }
        // The same parser the GenAuth client uses, so what passes here is what it can connect to.
        guard let url = URL(string: genauthHost), url.host != nil,
              (try? GenAuthConnectionPool.Endpoint(url: genauthHost)) != nil
        else {
            throw ConfigError(key: "genauth.host", "must be an http:// or https:// URL (scheme://host[:port][/path], no user info, query or fragment), not \"\(genauthHost)\"")
        }
        guard !appID.isEmpty else {
            throw ConfigError(key: "genauth.app_id", "is required (set SMSD_GENAUTH_APP_ID or genauth.app_id)")
        }
        guard GenAuthConnectionPool.isSafeHeader(name: headerFamily.appIdHeader, value: appID) else {
            throw ConfigError(key: "genauth.app_id", "contains a control character (such as a line break), which an HTTP header cannot carry")
        }
    }

    /// `genauth.app_id` → `SMSD_GENAUTH_APP_ID`.
    public static func environmentName(_ key: String) -> String {
        "SMSD_" + key.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }
}

public struct ConfigKeySpec: Sendable {
    public let name: String
    public let secret: Bool
    public let help: String
    init(_ name: String, secret: Bool = false, _ help: String) {
        self.name = name
        self.secret = secret
        self.help = help
    }
}

/// A configuration problem, naming the key at fault. The CLI exits 78 (EX_CONFIG) on it.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let key: String
    public let message: String
    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { "configuration error: \(key): \(message)" }
}

/// Where each key's value came from, for `check-config`; secrets are redacted here already.
public struct ConfigSources: Sendable {
    public var entries: [(key: String, value: String, secret: Bool)] = []
}

/// Reads every value as a string through swift-configuration (which does the precedence and the
/// secret marking) and parses it here, so that a wrong type is an error naming the key instead of a
/// silent fall back to the default.
final class RawValues {
    let reader: ConfigReader
    let specs: [String: ConfigKeySpec]
    var sources = ConfigSources()

    init(reader: ConfigReader, specs: [ConfigKeySpec]) {
        self.reader = reader
        self.specs = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })
    }

    func string(_ key: String) throws -> String? {
        let secret = specs[key]?.secret ?? false
        // An empty value (SMSD_X=, an empty credential file) counts as unset.
        guard let value = reader.string(forKey: ConfigKey(key), isSecret: secret),
              !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { return nil }
        sources.entries.append((key, secret ? "<redacted>" : value, secret))
        return value
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try string(key) else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigError(key: key, "must be a whole number, not \"\(text)\"")
        }
        guard range.contains(value) else {
            throw ConfigError(key: key, "must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }

    func bool(_ key: String) throws -> Bool? {
        guard let text = try string(key) else { return nil }
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigError(key: key, "must be true or false, not \"\(text)\"")
        }
    }

    func stringArray(_ key: String) throws -> [String]? {
        if let array = reader.stringArray(forKey: ConfigKey(key)) {
            sources.entries.append((key, "[" + array.joined(separator: ", ") + "]", false))
            return array.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        // A single value (or an environment variable) is a comma-separated list.
        return try string(key).map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }

    func double(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text = try string(key) else { return nil }
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw ConfigError(key: key, "must be a number, not \"\(text)\"")
        }
        guard range.contains(value) else {
            throw ConfigError(key: key, "must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }
}

extension DispatcherConfig {
    /// The effective value of a key, for `check-config`; secrets are never shown.
    public func describe(_ key: String) -> String {
        switch key {
        case "database.url": return "<redacted>"
        case "genauth.host": return genauthHost
        case "genauth.app_id": return appID
        case "genauth.app_secret": return appSecret == nil ? "(unset)" : "<redacted>"
        case "genauth.header_family": return headerFamily.rawValue
        case "genauth.timeout": return String(requestTimeout)
        case "throttle.window": return String(throttleWindow)
        case "concurrency": return String(concurrency)
        case "poll_interval": return String(pollInterval)
        case "retry.base_delay": return String(retryBaseDelay)
        case "retry.max_delay": return String(retryMaxDelay)
        case "heartbeat.interval": return String(heartbeatInterval)
        case "lease.duration": return String(leaseDuration)
        case "lease.rescue_interval": return String(rescueInterval)
        case "shutdown.grace": return String(shutdownGrace)
        case "log.level": return logLevel.rawValue
        case "worker.id": return workerID ?? "(host-pid-random)"
        case "countries.international": return String(international)
        case "countries.allow": return "[" + allowedCountryCodes.joined(separator: ", ") + "]"
        case "caps.per_phone_hour": return String(capPerPhoneHour)
        case "caps.per_phone_day": return String(capPerPhoneDay)
        case "rate_limit.requests_per_second": return String(rateLimit)
        case "delivery.policy": return deliveryPolicy.rawValue
        case "breaker.failure_threshold": return String(breakerThreshold)
        case "breaker.cool_down": return String(breakerCoolDown)
        case "genauth.access_key_id": return accessKeyID ?? "(unset: app-id mode)"
        case "genauth.access_key_secret": return accessKeySecret == nil ? "(unset)" : "<redacted>"
        case "retention.max_age_days": return String(retentionDays)
        case "retention.batch_size": return String(retentionBatchSize)
        case "retention.interval": return String(retentionInterval)
        case "metrics.listen": return metricsListen ?? "(off)"
        default:
            return ChannelRule.describe(key, in: self) ?? "?"
        }
    }
}

/// The schema version this build needs: the highest `sql/NNNN_*.sql` it was written against.
public enum SchemaVersion {
    public static let required = 7
}

/// `at-least-once`: a job whose call may have gone out when its worker died is retried (a duplicate is
/// possible, and bounded: see the README). `at-most-once`: it ends `failed`, saying delivery is unknown.
public enum DeliveryPolicy: String, Sendable {
    case atLeastOnce = "at-least-once"
    case atMostOnce = "at-most-once"
}
