import PostgresClient

/// The fraud guard's allow-list (`sms.fraud_allowed`).
package struct ListFraudAllowed: Statement {
    package struct Entry: Sendable, Equatable {
        package var prefix: String
        package var note: String?
        package var addedBy: String
        /// Epoch seconds.
        package var addedAt: Double
    }

    package init() {}

    package static let isPrepared = false
    package static let sql = """
        SELECT prefix, note, added_by, extract(epoch FROM added_at)::float8 AS added_at
        FROM sms.fraud_allowed ORDER BY prefix
        """

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> [Entry] {
        try rows.rows.map { row in
            Entry(
                prefix: try row.requiredString("prefix"), note: try row.string("note"),
                addedBy: try row.requiredString("added_by"), addedAt: try row.requiredDouble("added_at"))
        }
    }
}
