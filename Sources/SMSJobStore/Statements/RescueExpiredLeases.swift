import PostgresClient
import SMSModel

/// Returns jobs whose lease ran out (their worker died or hung) to the queue, by the delivery policy
/// (`sms.rescue_expired_leases`). Any daemon may run this; the row lock makes each rescue happen once.
package struct RescueExpiredLeases: AnnouncingStatement {
    package var policy: DeliveryPolicy
    /// Announce the rescued jobs on `sms_job_events`; off only when PostgreSQL refuses notifications
    /// (a full queue): the rescue never depends on them.
    package var announces: Bool
    /// `throttle.window`: the reservation wrote the phone's window as the call's slot + this + 1 s, so
    /// the rescue reads the slot back from it.
    package var throttleWindow: Duration
    /// Once a rescued call's proof window has closed, how long its holder's own answer gets to land
    /// before the job is retried (the retry may be a second SMS).
    package var holderGrace: Duration

    package init(
        policy: DeliveryPolicy, throttleWindow: Duration = .seconds(60), holderGrace: Duration = .seconds(15),
        announces: Bool = true
    ) {
        self.policy = policy
        self.throttleWindow = throttleWindow
        self.holderGrace = holderGrace
        self.announces = announces
    }

    package static let sql =
        "SELECT r_job_id, r_state FROM sms.rescue_expired_leases($1, $2::bool, $3::float8, $4::float8, $5::float8)"

    package var bindings: [String?] {
        [
            policy.rawValue, announces ? "true" : "false", String(throttleWindow.seconds),
            String(ProofWindow(throttleWindow: throttleWindow).length.seconds), String(holderGrace.seconds),
        ]
    }

    /// Each rescued job and the state it was put in.
    package func decode(_ rows: PostgresRows) throws -> [(id: Int64, state: JobState)] {
        try rows.rows.map { row in
            let state = try row.requiredString("r_state")
            guard let known = JobState(rawValue: state) else {
                throw PostgresError(code: .badValue, message: "rescue returned an unknown state \(state)")
            }
            return (Int64(try row.requiredInt("r_job_id")), known)
        }
    }
}
