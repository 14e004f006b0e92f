import PostgresClient
import SMSModel

/// `sms.queue_stats`, per channel and state.
package struct QueueStats: Statement {
    package init() {}

    package static let isPrepared = false
    package static let sql = """
        SELECT channel, state, jobs, due, oldest_pending_age_s, sent_last_minute, sent_last_hour, deferred, paused
        FROM sms.queue_stats ORDER BY channel, state
        """

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> [QueueStatsRow] {
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

package struct QueueStatsRow: Sendable, Codable, Equatable {
    package let channel: String
    package let state: String
    package let jobs: Int
    package let due: Int
    package let oldestPendingAgeSeconds: Double?
    package let sentLastMinute: Int
    package let sentLastHour: Int
    package let deferred: Int
    /// The channel is paused (`sms.controls`): its pending jobs wait.
    package let paused: Bool
}
