import PostgresClient
import SMSModel

/// `sms.workers`: the running daemons.
package struct ListWorkers: Statement {
    package init() {}

    package static let isPrepared = false
    package static let sql = """
        SELECT id, host, pid, version, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started_at,
               extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s,
               in_flight, claimed, sent, failed, retried, rejected, expired, deferred, superseded,
               instance, unwritten, oldest_unwritten_s
        FROM sms.workers ORDER BY started_at, id
        """

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> [WorkerRow] {
        try rows.rows.map { row in
            WorkerRow(
                id: try row.requiredString("id"), host: try row.requiredString("host"),
                pid: try row.requiredInt("pid"), version: try row.requiredString("version"),
                startedAt: try row.requiredString("started_at"),
                heartbeatAgeSeconds: try row.double("heartbeat_age_s") ?? 0,
                inFlight: try row.requiredInt("in_flight"), claimed: try row.requiredInt("claimed"),
                sent: try row.requiredInt("sent"), failed: try row.requiredInt("failed"),
                retried: try row.requiredInt("retried"), rejected: try row.requiredInt("rejected"),
                expired: try row.requiredInt("expired"), deferred: try row.requiredInt("deferred"),
                superseded: try row.requiredInt("superseded"), instance: try row.requiredString("instance"),
                unwritten: try row.requiredInt("unwritten"), oldestUnwrittenSeconds: try row.double("oldest_unwritten_s"))
        }
    }
}

package struct WorkerRow: Sendable, Codable, Equatable {
    package let id: String
    package let host: String
    package let pid: Int
    package let version: String
    package let startedAt: String
    package let heartbeatAgeSeconds: Double
    package let inFlight: Int
    package let claimed: Int
    package let sent: Int
    package let failed: Int
    package let retried: Int
    package let rejected: Int
    package let expired: Int
    package let deferred: Int
    package let superseded: Int
    /// Random per process: two daemons run with one worker id are two rows.
    package let instance: String
    /// Outcomes decided and not yet written, and how long writes have been failing (nil: they succeed).
    package let unwritten: Int
    package let oldestUnwrittenSeconds: Double?
}
