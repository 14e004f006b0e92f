import PostgresClient

/// An operator adds a number prefix to the fraud guard's allow-list (`sms.fraud_allow`): numbers
/// starting with it pass the guard and are not counted.
public struct AllowFraudPrefix: Statement {
    public var prefix: String
    public var note: String?

    public init(prefix: String, note: String?) {
        self.prefix = prefix
        self.note = note
    }

    public static let isPrepared = false
    public static let sql = "SELECT sms.fraud_allow($1::text, $2::text) AS prefix"

    public var bindings: [String?] { [prefix, note] }

    /// The prefix as stored (spaces removed).
    public func decode(_ rows: PostgresRows) throws -> String {
        try rows.single("sms.fraud_allow").requiredString("prefix")
    }
}
