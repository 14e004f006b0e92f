import PostgresClient
import SMSModel

/// Operator `requeue`: failed/expired (or other finished) jobs back to pending with fresh attempts. The
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
    public static let sql = """
        WITH picked AS (
            SELECT id FROM sms.jobs
            WHERE state = ANY ($1::text[])
              AND ($2::text IS NULL OR channel = $2)
              AND (cardinality($3::bigint[]) = 0 OR id = ANY ($3::bigint[]))
              AND ($4::float8 IS NULL OR finished_at > now() - make_interval(secs => $4::float8))
            ORDER BY id LIMIT $5
            FOR UPDATE SKIP LOCKED
        ), requeued AS (
            UPDATE sms.jobs j SET state = 'pending', attempts = 0, run_at = now(), created_at = now(),
                expires_at = NULL, finished_at = NULL, sent_at = NULL, uncertain = false, deferrals = 0,
                message = 'requeued by an operator (was ' || j.state || ': ' || COALESCE(j.message, '') || ')',
                updated_at = now()
            FROM picked WHERE j.id = picked.id AND NOT $6::bool
            RETURNING j.id
        )
        SELECT id FROM picked WHERE $6::bool
        UNION ALL SELECT id FROM requeued
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
