import PostgresClient
import SMSModel

/// Operator `cancel`: pending jobs become `cancelled`; says, per id, what happened.
package struct CancelJobs: Statement {
    package var ids: [Int64]

    package init(ids: [Int64]) { self.ids = ids }

    /// What became of one id.
    package enum Result: Sendable, Equatable, CustomStringConvertible {
        case cancelled
        case noSuchJob
        /// Claimed by a daemon right now: its call may be under way.
        case beingSent
        /// Finished already, in this state.
        case alreadyFinished(JobState)

        package var description: String {
            switch self {
            case .cancelled: return "cancelled"
            case .noSuchJob: return "no such job"
            case .beingSent: return "not cancelled: being sent right now"
            case .alreadyFinished(let state): return "not cancelled: already \(state.rawValue)"
            }
        }
    }

    package static let isPrepared = false
    // `sms.cancel_jobs` (SECURITY DEFINER, for sms_operator) holds the statement and announces the
    // cancelled jobs on `sms_job_events`.
    package static let sql = """
        SELECT r_id AS id, r_cancelled AS cancelled, r_state AS state FROM sms.cancel_jobs($1::bigint[])
        """

    package var bindings: [String?] { [PostgresArray.literal(ids.map { Int($0) })] }

    package func decode(_ rows: PostgresRows) throws -> [(id: Int64, result: Result)] {
        try rows.rows.map { row in
            let id = Int64(try row.requiredInt("id"))
            if try row.bool("cancelled") == true { return (id, .cancelled) }
            guard let raw = try row.string("state") else { return (id, .noSuchJob) }
            guard let state = JobState(rawValue: raw) else {
                throw PostgresError(code: .badValue, message: "job \(id) has an unknown state \(raw)")
            }
            return (id, state == .running ? .beingSent : .alreadyFinished(state))
        }
    }
}
