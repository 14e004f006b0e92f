import PostgresClient
import SMSModel

/// Operator `requeue`: failed/expired (or other finished, unsent) jobs back to pending with fresh attempts. The
/// TTL counts from the requeue (created_at is reset). Requeued rows are no inserts: follow it with
/// `NotifyJobsAvailable` to wake idle daemons.
package struct RequeueJobs: Statement {
    package var states: [JobState]
    package var channel: Channel?
    package var ids: [Int64]
    /// Only jobs finished within this long.
    package var finishedWithin: Duration?
    package var limit: Int
    /// List what would be requeued, change nothing.
    package var dryRun: Bool

    package init(states: [JobState], channel: Channel?, ids: [Int64], finishedWithin: Duration?, limit: Int, dryRun: Bool) {
        self.states = states
        self.channel = channel
        self.ids = ids
        self.finishedWithin = finishedWithin
        self.limit = limit
        self.dryRun = dryRun
    }

    package static let isPrepared = false
    // `sms.requeue_jobs` (SECURITY DEFINER, for sms_operator) holds the statement; it refuses states
    // other than failed, expired, rejected, cancelled and superseded.
    package static let sql = """
        SELECT r_id AS id FROM sms.requeue_jobs($1::text[], $2::text, $3::bigint[], $4::float8, $5::int, $6::bool)
        """

    package var bindings: [String?] {
        [
            PostgresArray.literal(states.map { Optional($0.rawValue) }), channel?.rawValue,
            PostgresArray.literal(ids.map { Int($0) }), finishedWithin.map { String($0.seconds) }, String(limit),
            dryRun ? "true" : "false",
        ]
    }

    /// The ids requeued (or, dry run, that would be).
    package func decode(_ rows: PostgresRows) throws -> [Int64] {
        try rows.rows.compactMap { try $0.int("id").map(Int64.init) }
    }
}
