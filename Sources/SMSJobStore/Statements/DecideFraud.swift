import PostgresClient
import SMSModel

/// The fraud guard's decision for a list of would-be sends (`sms.fraud_decide`), counted as the
/// reservation counts them. The daemon reaches it through `ReserveSends`; `sms-bench`'s fraud scenario
/// runs it alone, on a simulated clock.
package struct DecideFraud: Statement {
    package struct Request: Sendable, Equatable {
        /// `+CC national`, as `sms.jobs.phone_key`.
        package var phoneKey: String
        package var clientIP: String?
        package var userRef: String?

        package init(phoneKey: String, clientIP: String?, userRef: String?) {
            self.phoneKey = phoneKey
            self.clientIP = clientIP
            self.userRef = userRef
        }
    }

    package var requests: [Request]
    package var settings: FraudSettings
    /// Epoch seconds; nil: now().
    package var now: Double?

    package init(requests: [Request], settings: FraudSettings, now: Double? = nil) {
        self.requests = requests
        self.settings = settings
        self.now = now
    }

    package static let sql = """
        SELECT r_index, r_decision, r_rule, r_detail
        FROM sms.fraud_decide(COALESCE(to_timestamp($1::float8), now()), $2::text[], $3::inet[], $4::text[],
                              $5::text, $6::int[], $7::int)
        ORDER BY r_index
        """

    package var bindings: [String?] {
        [
            now.map { String($0) }, PostgresArray.literal(requests.map { Optional($0.phoneKey) }),
            PostgresArray.literal(requests.map(\.clientIP)), PostgresArray.literal(requests.map(\.userRef)),
            settings.mode.rawValue, PostgresArray.literal(settings.limits), String(settings.trustVerifiedDays),
        ]
    }

    /// In request order: each one's decision and, if a rule fired, its name.
    package func decode(_ rows: PostgresRows) throws -> [(decision: FraudDecision, rule: FraudRule?)] {
        try rows.rows.map { row in
            let decision = try row.requiredString("r_decision")
            guard let known = FraudDecision(rawValue: decision) else {
                throw PostgresError(
                    code: .badValue, message: "sms.fraud_decide returned an unknown decision \(decision.prefix(40))")
            }
            let rule = try row.string("r_rule")
            guard let rule else { return (known, nil) }
            guard let knownRule = FraudRule(rawValue: rule) else {
                throw PostgresError(code: .badValue, message: "sms.fraud_decide returned an unknown rule \(rule.prefix(40))")
            }
            return (known, knownRule)
        }
    }
}
