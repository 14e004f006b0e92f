/// An operator's pause (`sms.controls`), as the daemons and `status` see it. Stored by `sms.pause`;
/// the claim itself reads the table, so a pause holds from its commit whatever a daemon has heard.
package struct Pause: Sendable, Equatable, Codable {
    /// What it pauses: every channel, or one.
    package enum Scope: Sendable, Hashable, Codable {
        case all
        case channel(Channel)

        /// `sms.controls.channel`: `*` or the channel's name.
        package var stored: String {
            switch self {
            case .all: return "*"
            case .channel(let channel): return channel.rawValue
            }
        }

        /// For people: "all channels" or the channel's name.
        package var shown: String { self == .all ? "all channels" : stored }

        /// The argument of `sms.pause`/`sms.resume`, where NULL means every channel.
        package var argument: String? { self == .all ? nil : stored }

        package init?(stored: String) {
            if stored == "*" {
                self = .all
                return
            }
            guard let channel = Channel(rawValue: stored) else { return nil }
            self = .channel(channel)
        }

        /// Encoded as its stored form (`*` or the channel's name), as in `sms.controls`.
        package init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            let stored = try container.decode(String.self)
            guard let scope = Scope(stored: stored) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown pause scope \(stored)")
            }
            self = scope
        }

        package func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(stored)
        }

        package func covers(_ channel: Channel) -> Bool {
            switch self {
            case .all: return true
            case .channel(let own): return own == channel
            }
        }
    }

    package var scope: Scope
    /// The database role that paused (`session_user`).
    package var pausedBy: String
    package var reason: String?
    /// Epoch seconds, the database's clock.
    package var since: Double
    /// Epoch seconds, the database's clock; nil: until resumed.
    package var until: Double?

    package init(scope: Scope, pausedBy: String, reason: String? = nil, since: Double, until: Double? = nil) {
        self.scope = scope
        self.pausedBy = pausedBy
        self.reason = reason
        self.since = since
        self.until = until
    }
}

/// The pauses in force, and what they mean per channel.
package struct Pauses: Sendable, Equatable {
    package var all: [Pause]

    package init(_ all: [Pause] = []) { self.all = all }

    package var isEmpty: Bool { all.isEmpty }

    /// The pause holding a channel, if any (the pause of every channel first).
    package func pause(of channel: Channel) -> Pause? {
        all.first { $0.scope == .all } ?? all.first { $0.scope.covers(channel) }
    }

    /// Pauses that are in `self` and not in `other` (by scope, reason and end): for "paused"/"resumed"
    /// log lines when the set changes.
    package func added(since other: Pauses) -> [Pause] {
        all.filter { pause in !other.all.contains(pause) }
    }
}
