import PostgresClient

/// An operator takes a number prefix off the fraud guard's allow-list (`sms.fraud_disallow`).
public struct DisallowFraudPrefix: Statement {
    public var prefix: String

    public init(prefix: String) { self.prefix = prefix }

    public static let isPrepared = false
    public static let sql = "SELECT sms.fraud_disallow($1::text) AS removed"

    public var bindings: [String?] { [prefix] }

    /// Whether the prefix was on the list.
    public func decode(_ rows: PostgresRows) throws -> Bool {
        try rows.single("sms.fraud_disallow").bool("removed") ?? false
    }
}
