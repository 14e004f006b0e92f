import PostgresClient

/// Codes entered, counted for the guard's baselines (`sms.fraud_verified`, which `sms.mark_verified`
/// calls for one job): `sms-bench`'s fraud scenario reports its simulated users' codes with it.
package struct RecordVerifications: Statement {
    /// `+CC national` of each verified code, and its user_ref.
    package var phoneKeys: [String]
    package var userRefs: [String?]
    /// Epoch seconds; nil: now().
    package var now: Double?

    package init(phoneKeys: [String], userRefs: [String?], now: Double? = nil) {
        self.phoneKeys = phoneKeys
        self.userRefs = userRefs
        self.now = now
    }

    package static let sql = """
        SELECT sms.fraud_verified(COALESCE(to_timestamp($1::float8), now()), $2::text[], $3::text[])
        """

    package var bindings: [String?] {
        [now.map { String($0) }, PostgresArray.literal(phoneKeys.map { Optional($0) }), PostgresArray.literal(userRefs)]
    }
}
