/// An operator's pause (`sms.controls`), as the daemons and `status` see it. Stored by `sms.pause`;
/// the claim itself reads the table, so a pause holds from its commit whatever a daemon has heard.
public struct Pause: Sendable, Equatable, Codable {
    /// What it pauses: every channel, or one.
    public enum Scope: Sendable, Hashable, Codable {
        case all
        case channel(Channel)

        /// `sms.controls.channel`: `*` or the channel's name.
        public var stored: String {
            switch self {
            case .all: return "*"
            case .channel(let channel): return channel.rawValue
            }
        }

        /// For people: "all channels" or the channel's name.
        public var shown: String { self == .all ? "all channels" : stored }

        /// The argument of `sms.pause`/`sms.resume`, where NULL means every channel.
        public var argument: String? { self == .all ? nil : stored }

        public init?(stored: String) {
            if stored == "*" { self = .all; return }
            guard let channel = Channel(rawValue: stored) else { return nil }
            self = .channel(channel)
        }

        /// Encoded as its stored form (`*` or the channel's name), as in `sms.controls`.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            let stored = try container.decode(String.self)
            guard let scope = Scope(stored: stored) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown pause scope \(stored)")
            }
            self = scope
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(stored)
        }

        public func covers(_ channel: Channel) -> Bool {
            switch self {
            case .all: return true
            case .channel(let own): return own == channel
            }
        }
    }

    public var scope: Scope
    /// The database role that paused (`session_user`).
    public var pausedBy: String
    public var reason: String?
    /// Epoch seconds, the database's clock.
    public var since: Double
    /// Epoch seconds, the database's clock; nil: until resumed.
    public var until: Double?

    public init(scope: Scope, pausedBy: String, reason: String? = nil, since: Double, until: Double? = nil) {
        self.scope = scope
        self.pausedBy = pausedBy
        self.reason = reason
        self.since = since
        self.until = until
    }
}

/// The pauses in force, and what they mean per channel.
public struct Pauses: Sendable, Equatable {
    public var all: [Pause]

    public init(_ all: [Pause] = []) { self.all = all }

    public var isEmpty: Bool { all.isEmpty }

    /// The pause holding a channel, if any (the pause of every channel first).
    public func pause(of channel: Channel) -> Pause? {
        all.first { $0.scope == .all } ?? all.first { $0.scope.covers(channel) }
    }

    /// Pauses that are in `self` and not in `other` (by scope, reason and end): for "paused"/"resumed"
    /// log lines when the set changes.
    public func added(since other: Pauses) -> [Pause] {
        all.filter { pause in !other.all.contains(pause) }
    }
}
