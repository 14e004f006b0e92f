import PostgresClient
import SMSModel

/// One round of the fraud guard's anomaly side (`sms.fraud_evaluate`): folds the closed minutes into
/// the baselines, blocks (or keeps blocked) the anomalous prefixes and countries. Returns the blocks it
/// made or extended; nothing when another daemon is evaluating or evaluated less than `interval` ago.
/// `now` nil: the database's clock (the daemon); the bench passes its simulated clock.
package struct EvaluateFraud: Statement {
    package var settings: FraudSettings
    /// How often the cluster evaluates (`fraud.evaluate_interval`).
    package var interval: Duration
    /// Epoch seconds; nil: now().
    package var now: Double?

    package init(settings: FraudSettings, interval: Duration = .seconds(30), now: Double? = nil) {
        self.settings = settings
        self.interval = interval
        self.now = now
    }

    /// A block this round made (`isNew`) or extended.
    package struct Change: Sendable, Equatable {
        package var block: FraudBlock
        package var isNew: Bool
    }

    package static let sql = """
        SELECT r_scope, r_key, extract(epoch FROM r_since)::float8 AS since, extract(epoch FROM r_until)::float8 AS until,
               r_reason, r_new
        FROM sms.fraud_evaluate(COALESCE(to_timestamp($1::float8), now()), $2::float8, $3::int, $4::float8,
                                $5::float8, $6::float8, $7::float8)
        """

    package var bindings: [String?] {
        [
            now.map { String($0) }, String(settings.anomalyFactor), String(settings.anomalyMinRequests),
            String(settings.anomalyMaxVerified), String(settings.blockDuration.seconds / 60), String(settings.baselineHours),
            String(interval.seconds),
        ]
    }

    package func decode(_ rows: PostgresRows) throws -> [Change] {
        try rows.rows.map { row in
            let stored = try row.requiredString("r_scope")
            guard let scope = FraudBlock.Scope(rawValue: stored) else {
                throw PostgresError(code: .badValue, message: "sms.fraud_evaluate returned an unknown scope \(stored.prefix(40))")
            }
            return Change(
                block: FraudBlock(
                    scope: scope, key: try row.requiredString("r_key"), since: try row.requiredDouble("since"),
                    until: try row.requiredDouble("until"), reason: try row.requiredString("r_reason")),
                isNew: try row.bool("r_new") ?? false)
        }
    }
}
