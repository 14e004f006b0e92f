import PostgresClient

/// Pending jobs due now: the queue depth metric.
package struct CountDueJobs: Statement {
    package init() {}

    package static let sql = "SELECT count(*)::int AS n FROM sms.jobs WHERE due_at <= now()"

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> Int { try rows.first?.int("n") ?? 0 }
}
