import PostgresClient
import SMSModel

/// `sms.workers`: the running daemons.
public struct ListWorkers: Statement {
    public init() {}

    public static let isPrepared = false
    public static let sql = """
        SELECT id, host, pid, version, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started_at,
               extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s,
               in_flight, claimed, sent, failed, retried, rejected, expired, deferred, superseded,
               instance, unwritten, oldest_unwritten_s
        FROM sms.workers ORDER BY started_at, id
        """

    public var bindings: [String?] { [] }

    public func decode(_ rows: PostgresRows) throws -> [WorkerRow] {
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

public struct WorkerRow: Sendable, Codable, Equatable {
    public let id: String
    public let host: String
    public let pid: Int
    public let version: String
    public let startedAt: String
    public let heartbeatAgeSeconds: Double
    public let inFlight: Int
    public let claimed: Int
    public let sent: Int
    public let failed: Int
    public let retried: Int
    public let rejected: Int
    public let expired: Int
    public let deferred: Int
    public let superseded: Int
    /// Random per process: two daemons run with one worker id are two rows.
    public let instance: String
    /// Outcomes decided and not yet written, and how long writes have been failing (nil: they succeed).
    public let unwritten: Int
    public let oldestUnwrittenSeconds: Double?
}
