import PostgresClient

/// The producer's report that a job's code was entered (`sms.mark_verified`): true the first time for
/// a sent job.
package struct MarkVerified: Statement {
    package var jobID: Int64

    package init(jobID: Int64) { self.jobID = jobID }

    package static let isPrepared = false
    package static let sql = "SELECT sms.mark_verified($1::bigint) AS verified"

    package var bindings: [String?] { [String(jobID)] }

    package func decode(_ rows: PostgresRows) throws -> Bool {
        try rows.single("sms.mark_verified").bool("verified") ?? false
    }
}
