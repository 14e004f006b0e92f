import PostgresClient

/// Wakes idle daemons (`NOTIFY sms_jobs`, what the insert trigger sends) after jobs became due without
/// an insert: a requeue.
package struct NotifyJobsAvailable: Statement {
    package init() {}

    package static let isPrepared = false
    package static let sql = "SELECT pg_notify($1, '')"

    package var bindings: [String?] { [NotificationChannel.jobsAvailable.rawValue] }
}
