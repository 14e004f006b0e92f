import PostgresClient
import SMSModel

/// The fraud guard's retention (`sms.fraud_prune`): at most every 5 minutes, bounded deletes of the
/// counters past every window, decayed baselines, blocks a week over and users no longer trusted.
/// Returns the rows deleted (0 in a round that came sooner). `now` nil: the database's clock.
package struct PruneFraudState: Statement {
    package var settings: FraudSettings
    /// Epoch seconds; nil: now().
    package var now: Double?

    package init(settings: FraudSettings, now: Double? = nil) {
        self.settings = settings
        self.now = now
    }

    package static let sql = """
        SELECT sms.fraud_prune(COALESCE(to_timestamp($1::float8), now()), $2::float8, $3::int) AS deleted
        """

    package var bindings: [String?] {
        [now.map { String($0) }, String(settings.baselineHours), String(settings.trustVerifiedDays)]
    }

    package func decode(_ rows: PostgresRows) throws -> Int {
        try rows.single("sms.fraud_prune").requiredInt("deleted")
    }
}
