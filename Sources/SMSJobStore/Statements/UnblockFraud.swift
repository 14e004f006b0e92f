import PostgresClient

/// An operator ends a fraud guard block now (`sms.fraud_unblock`); the daemons do not block the key
/// again for one block time. Keys are matched without spaces: `+86 1380013` and `+861380013` are one.
public struct UnblockFraud: Statement {
    public var key: String

    public init(key: String) { self.key = key }

    public static let isPrepared = false
    public static let sql = "SELECT sms.fraud_unblock($1::text) AS n"

    public var bindings: [String?] { [key] }

    /// The blocks ended (0: none in force on that key).
    public func decode(_ rows: PostgresRows) throws -> Int {
        try rows.single("sms.fraud_unblock").requiredInt("n")
    }
}
