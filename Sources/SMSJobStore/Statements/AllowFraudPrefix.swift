import PostgresClient

/// An operator adds a number prefix to the fraud guard's allow-list (`sms.fraud_allow`): numbers
/// starting with it pass the guard and are not counted.
package struct AllowFraudPrefix: Statement {
    package var prefix: String
    package var note: String?

    package init(prefix: String, note: String?) {
        self.prefix = prefix
        self.note = note
    }

    package static let isPrepared = false
    package static let sql = "SELECT sms.fraud_allow($1::text, $2::text) AS prefix"

    package var bindings: [String?] { [prefix, note] }

    /// The prefix as stored (spaces removed).
    package func decode(_ rows: PostgresRows) throws -> String {
        try rows.single("sms.fraud_allow").requiredString("prefix")
    }
}
