import PostgresClient
import SMSModel

/// `sms.queue_stats`, per channel and state.
public struct QueueStats: Statement {
    public init() {}

    public static let isPrepared = false
    public static let sql = """
        SELECT channel, state, jobs, due, oldest_pending_age_s, sent_last_minute, sent_last_hour, deferred, paused
        FROM sms.queue_stats ORDER BY channel, state
        """

    public var bindings: [String?] { [] }

    public func decode(_ rows: PostgresRows) throws -> [QueueStatsRow] {
        try rows.rows.map { row in
            QueueStatsRow(
                channel: try row.requiredString("channel"), state: try row.requiredString("state"),
                jobs: try row.requiredInt("jobs"), due: try row.requiredInt("due"),
                oldestPendingAgeSeconds: try row.double("oldest_pending_age_s"),
                sentLastMinute: try row.requiredInt("sent_last_minute"),
                sentLastHour: try row.requiredInt("sent_last_hour"),
                deferred: try row.requiredInt("deferred"), paused: try row.bool("paused") ?? false)
        }
    }
}

public struct QueueStatsRow: Sendable, Codable, Equatable {
    public let channel: String
    public let state: String
    public let jobs: Int
    public let due: Int
    public let oldestPendingAgeSeconds: Double?
    public let sentLastMinute: Int
    public let sentLastHour: Int
    public let deferred: Int
    /// The channel is paused (`sms.controls`): its pending jobs wait.
    public let paused: Bool
}
