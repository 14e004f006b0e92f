import PostgresClient
import SMSModel

/// Operator `cancel`: pending jobs become `cancelled`; says, per id, what happened.
public struct CancelJobs: Statement {
    public var ids: [Int64]

    public init(ids: [Int64]) { self.ids = ids }

    /// What became of one id.
    public enum Result: Sendable, Equatable, CustomStringConvertible {
        case cancelled
        case noSuchJob
        /// Claimed by a daemon right now: its call may be under way.
        case beingSent
        /// Finished already, in this state.
        case alreadyFinished(JobState)

        public var description: String {
            switch self {
            case .cancelled: return "cancelled"
            case .noSuchJob: return "no such job"
            case .beingSent: return "not cancelled: being sent right now"
            case .alreadyFinished(let state): return "not cancelled: already \(state.rawValue)"
            }
        }
    }

    public static let isPrepared = false
    public static let sql = """
        WITH target AS (SELECT unnest($1::bigint[]) AS id),
        cancelled AS (
            UPDATE sms.jobs j SET state = 'cancelled', finished_at = now(), updated_at = now(),
                message = 'cancelled by an operator'
            WHERE j.id IN (SELECT id FROM target) AND j.state = 'pending'
            RETURNING j.id
        )
        SELECT t.id, c.id IS NOT NULL AS cancelled, j.state
        FROM target t LEFT JOIN cancelled c ON c.id = t.id LEFT JOIN sms.jobs j ON j.id = t.id
        ORDER BY t.id
        """

    public var bindings: [String?] { [PostgresArray.literal(ids.map { Int($0) })] }

    public func decode(_ rows: PostgresRows) throws -> [(id: Int64, result: Result)] {
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
