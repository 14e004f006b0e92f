import PostgresClient
import SMSModel

/// One job's state and GenAuth's answer to its last call: what a producer waiting on it reports.
package struct JobResult: Statement {
    // Unnamed: read once a second by `enqueue --wait`, which producers may run through a pooler in
    // transaction pooling (a named statement prepared on one server session is missing on the next).
    package static let isPrepared = false
    package var id: Int64

    package init(id: Int64) { self.id = id }

    package static let sql = """
        SELECT state, status_code, api_code, message, request_id, http_status, attempts,
               extract(epoch FROM run_at - now())::float8 AS run_in
        FROM sms.jobs WHERE id = $1
        """

    package var bindings: [String?] { [String(id)] }

    package struct Row: Sendable, Equatable, Codable {
        package var id: Int64
        package var state: JobState
        package var statusCode: Int?
        package var apiCode: Int?
        package var message: String?
        package var requestID: String?
        package var httpStatus: Int?
        package var attempts: Int
        /// Seconds until it is due (a deferred or retried job: "resend in ...").
        package var runIn: Double

        package init(
            id: Int64, state: JobState, statusCode: Int? = nil, apiCode: Int? = nil, message: String? = nil,
            requestID: String? = nil, httpStatus: Int? = nil, attempts: Int = 0, runIn: Double = 0
        ) {
            self.id = id
            self.state = state
            self.statusCode = statusCode
            self.apiCode = apiCode
            self.message = message
            self.requestID = requestID
            self.httpStatus = httpStatus
            self.attempts = attempts
            self.runIn = runIn
        }
    }

    /// nil: no such job (never inserted, or purged).
    package func decode(_ rows: PostgresRows) throws -> Row? {
        guard let row = rows.first else { return nil }
        let stored = try row.requiredString("state")
        guard let state = JobState(rawValue: stored) else {
            throw PostgresError(code: .badValue, message: "job \(id) has an unknown state \(stored)")
        }
        return Row(
            id: id, state: state, statusCode: try row.int("status_code"), apiCode: try row.int("api_code"),
            message: try row.string("message"), requestID: try row.string("request_id"),
            httpStatus: try row.int("http_status"), attempts: try row.requiredInt("attempts"),
            runIn: try row.requiredDouble("run_in"))
    }
}
