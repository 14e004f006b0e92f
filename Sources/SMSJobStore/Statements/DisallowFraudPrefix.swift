import PostgresClient

/// An operator takes a number prefix off the fraud guard's allow-list (`sms.fraud_disallow`).
package struct DisallowFraudPrefix: Statement {
    package var prefix: String

    package init(prefix: String) { self.prefix = prefix }

    package static let isPrepared = false
    package static let sql = "SELECT sms.fraud_disallow($1::text) AS removed"

    package var bindings: [String?] { [prefix] }

    /// Whether the prefix was on the list.
    package func decode(_ rows: PostgresRows) throws -> Bool {
        try rows.single("sms.fraud_disallow").bool("removed") ?? false
    }
}
