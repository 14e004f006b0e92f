import PostgresClient

/// Retention's housekeeping: throttle windows closed for a day and worker rows silent for a day.
public struct ForgetStaleRows: Statement {
    public init() {}

    public static let isPrepared = false
    public static let sql = """
        WITH windows AS (DELETE FROM sms.throttle WHERE window_until < now() - interval '1 day' RETURNING 1),
             workers AS (DELETE FROM sms.workers WHERE heartbeat_at < now() - interval '1 day' RETURNING 1)
        SELECT (SELECT count(*) FROM windows)::int AS windows, (SELECT count(*) FROM workers)::int AS workers
        """

    public var bindings: [String?] { [] }

    /// Throttle windows and worker rows forgotten.
    public func decode(_ rows: PostgresRows) throws -> (windows: Int, workers: Int) {
        let row = try rows.single("forgetting stale rows")
        return (try row.requiredInt("windows"), try row.requiredInt("workers"))
    }
}
