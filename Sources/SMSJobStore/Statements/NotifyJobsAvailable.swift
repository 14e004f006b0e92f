import PostgresClient

/// Wakes idle daemons (`NOTIFY sms_jobs`, what the insert trigger sends) after jobs became due without
/// an insert: a requeue.
public struct NotifyJobsAvailable: Statement {
    public init() {}

    public static let isPrepared = false
    public static let sql = "SELECT pg_notify($1, '')"

    public var bindings: [String?] { [NotificationChannel.jobsAvailable.rawValue] }
}
