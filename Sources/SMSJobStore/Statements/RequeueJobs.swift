import PostgresClient
import SMSModel

/// Operator `requeue`: failed/expired (or other finished, unsent) jobs back to pending with fresh attempts. The
/// TTL counts from the requeue (created_at is reset). Requeued rows are no inserts: follow it with
/// `NotifyJobsAvailable` to wake idle daemons.
public struct RequeueJobs: Statement {
    public var states: [JobState]
    public var channel: Channel?
    public var ids: [Int64]
    /// Only jobs finished within this long.
    public var finishedWithin: Duration?
    public var limit: Int
    /// List what would be requeued, change nothing.
    public var dryRun: Bool

    public init(states: [JobState], channel: Channel?, ids: [Int64], finishedWithin: Duration?, limit: Int, dryRun: Bool) {
        self.states = states
        self.channel = channel
        self.ids = ids
        self.finishedWithin = finishedWithin
        self.limit = limit
        self.dryRun = dryRun
    }

    public static let isPrepared = false
    // `sms.requeue_jobs` (SECURITY DEFINER, for sms_operator) holds the statement; it refuses states
    // other than failed, expired, rejected, cancelled and superseded.
    public static let sql = """
        SELECT r_id AS id FROM sms.requeue_jobs($1::text[], $2::text, $3::bigint[], $4::float8, $5::int, $6::bool)
        """

    public var bindings: [String?] {
        [PostgresArray.literal(states.map { Optional($0.rawValue) }), channel?.rawValue,
         PostgresArray.literal(ids.map { Int($0) }), finishedWithin.map { String($0.seconds) }, String(limit),
         dryRun ? "true" : "false"]
    }

    /// The ids requeued (or, dry run, that would be).
    public func decode(_ rows: PostgresRows) throws -> [Int64] {
        try rows.rows.compactMap { try $0.int("id").map(Int64.init) }
    }
}
