import PostgresClient

/// The producer's report that a job's code was entered (`sms.mark_verified`): true the first time for
/// a sent job.
public struct MarkVerified: Statement {
    public var jobID: Int64

    public init(jobID: Int64) { self.jobID = jobID }

    public static let isPrepared = false
    public static let sql = "SELECT sms.mark_verified($1::bigint) AS verified"

    public var bindings: [String?] { [String(jobID)] }

    public func decode(_ rows: PostgresRows) throws -> Bool {
        try rows.single("sms.mark_verified").bool("verified") ?? false
    }
}
