/// What configuration says about one channel. `channels.defaults.*` applies to every channel,
/// `channels.CHANNEL_X.*` overrides it for one.
public struct ChannelRule: Sendable, Equatable {
    /// A disabled channel's jobs are `rejected`, saying so.
    public var enabled = true
    /// Priority given to jobs inserted with priority 0.
    public var priority = 0
    /// Seconds after `created_at` when a job is `expired` instead of sent (codes go stale); 0: none.
    /// Every GenAuth channel sends a verification code, so all default to 10 minutes.
    public var ttl = 600.0
    /// Caps the job's own `max_attempts`; nil: the job's value.
    public var maxAttempts: Int? = nil
    /// Several jobs for one phone and channel: send the newest, supersede the others.
    public var coalesce = true

    public init() {}

    static let fields: [(name: String, help: String)] = [
        ("enabled", "false: the channel's jobs are rejected"),
        ("priority", "priority for jobs inserted with priority 0"),
        ("ttl", "seconds after created_at a job expires instead of being sent (0: never)"),
        ("max_attempts", "cap on a job's max_attempts"),
        ("coalesce", "send only the newest of several jobs for one phone and channel"),
    ]

    static let keys: [ConfigKeySpec] = (["defaults"] + Channel.allCases.map(\.rawValue)).flatMap { scope in
        fields.map { ConfigKeySpec("channels.\(scope).\($0.name)", $0.help) }
    }

    static func read(scope: String, base: ChannelRule, values: RawValues) throws -> ChannelRule {
        var rule = base
        let prefix = "channels.\(scope)."
        try values.bool(prefix + "enabled").map { rule.enabled = $0 }
        try values.int(prefix + "priority", in: Int(Int16.min)...Int(Int16.max)).map { rule.priority = $0 }
        try values.double(prefix + "ttl", in: 0...604_800).map { rule.ttl = $0 }
        try values.int(prefix + "max_attempts", in: 1...100).map { rule.maxAttempts = $0 }
        try values.bool(prefix + "coalesce").map { rule.coalesce = $0 }
        return rule
    }

    static func describe(_ key: String, in config: DispatcherConfig) -> String? {
        let parts = key.split(separator: ".").map(String.init)
        guard parts.count == 3, parts[0] == "channels" else { return nil }
        let rule = parts[1] == "defaults" ? nil : Channel(rawValue: parts[1]).map(config.rule(for:))
        guard let rule else { return parts[1] == "defaults" ? "(per channel)" : nil }
        switch parts[2] {
        case "enabled": return String(rule.enabled)
        case "priority": return String(rule.priority)
        case "ttl": return String(rule.ttl)
        case "max_attempts": return rule.maxAttempts.map(String.init) ?? "(the job's)"
        case "coalesce": return String(rule.coalesce)
        default: return nil
        }
    }
}

extension Character {
    var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}
