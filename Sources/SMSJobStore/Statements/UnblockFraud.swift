import PostgresClient

/// An operator ends a fraud guard block now (`sms.fraud_unblock`); the daemons do not block the key
/// again for one block time. Keys are matched without spaces: `+86 1380013` and `+861380013` are one.
package struct UnblockFraud: Statement {
    package var key: String

    package init(key: String) { self.key = key }

    package static let isPrepared = false
    package static let sql = "SELECT sms.fraud_unblock($1::text) AS n"

    package var bindings: [String?] { [key] }

    /// The blocks ended (0: none in force on that key).
    package func decode(_ rows: PostgresRows) throws -> Int {
        try rows.single("sms.fraud_unblock").requiredInt("n")
    }
}
