import PostgresClient

/// The fraud guard's allow-list (`sms.fraud_allowed`).
public struct ListFraudAllowed: Statement {
    public struct Entry: Sendable, Equatable {
        public var prefix: String
        public var note: String?
        public var addedBy: String
        /// Epoch seconds.
        public var addedAt: Double
    }

    public init() {}

    public static let isPrepared = false
    public static let sql = """
        SELECT prefix, note, added_by, extract(epoch FROM added_at)::float8 AS added_at
        FROM sms.fraud_allowed ORDER BY prefix
        """

    public var bindings: [String?] { [] }

    public func decode(_ rows: PostgresRows) throws -> [Entry] {
        try rows.rows.map { row in
            Entry(prefix: try row.requiredString("prefix"), note: try row.string("note"),
                  addedBy: try row.requiredString("added_by"), addedAt: try row.requiredDouble("added_at"))
        }
    }
}
