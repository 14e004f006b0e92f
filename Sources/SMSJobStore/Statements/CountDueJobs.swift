import PostgresClient

/// Pending jobs due now: the queue depth metric.
public struct CountDueJobs: Statement {
    public init() {}

    public static let sql = "SELECT count(*)::int AS n FROM sms.jobs WHERE due_at <= now()"

    public var bindings: [String?] { [] }

    public func decode(_ rows: PostgresRows) throws -> Int { try rows.first?.int("n") ?? 0 }
}
