import PostgresClient

/// Retention's housekeeping: throttle windows closed for a day (unless still a running job's crash
/// marker) and worker rows silent for a day. (The reservation's key rows: `ForgetKeyLocks`.)
package struct ForgetStaleRows: Statement {
    package init() {}

    package static let isPrepared = false
    package static let sql = """
        WITH windows AS (
            -- Not a window that is still a crash marker: its job runs under the claim it was granted
            -- to (the database or every daemon away for a day), and its rescue must read it.
            DELETE FROM sms.throttle t WHERE t.window_until < now() - interval '1 day'
              AND NOT EXISTS (SELECT 1 FROM sms.jobs j
                              WHERE j.id = t.job_id AND j.lease_token = t.lease_token AND j.state = 'running')
            RETURNING 1),
             workers AS (DELETE FROM sms.workers WHERE heartbeat_at < now() - interval '1 day' RETURNING 1)
        SELECT (SELECT count(*) FROM windows)::int AS windows, (SELECT count(*) FROM workers)::int AS workers
        """

    package var bindings: [String?] { [] }

    /// Throttle windows and worker rows forgotten.
    package func decode(_ rows: PostgresRows) throws -> (windows: Int, workers: Int) {
        let row = try rows.single("forgetting stale rows")
        return (try row.requiredInt("windows"), try row.requiredInt("workers"))
    }
}
