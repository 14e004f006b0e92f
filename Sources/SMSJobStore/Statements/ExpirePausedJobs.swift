import PostgresClient
import SMSModel

/// Pending jobs of paused channels whose time ran out end `expired` (`sms.expire_paused_jobs`): the
/// claim skips them, so the daemon's triage never sees them. At most `limit` per call; it also tells up
/// to `limit` paused jobs why they wait (those `sms.pause` did not reach).
package struct ExpirePausedJobs: AnnouncingStatement {
    package var limit: Int
    /// Announce the expired jobs on `sms_job_events`; off only when PostgreSQL refuses notifications.
    package var announces: Bool

    package init(limit: Int = 1000, announces: Bool = true) {
        self.limit = limit
        self.announces = announces
    }

    package static let sql = "SELECT sms.expire_paused_jobs($1, $2::bool) AS expired"

    package var bindings: [String?] { [String(limit), announces ? "true" : "false"] }

    package func decode(_ rows: PostgresRows) throws -> Int { try rows.first?.int("expired") ?? 0 }
}
