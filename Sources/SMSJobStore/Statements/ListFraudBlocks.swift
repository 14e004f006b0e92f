import PostgresClient
import SMSModel

/// The fraud guard's blocks in force (`sms.fraud_blocks`, until in the future), newest first.
package struct ListFraudBlocks: Statement {
    package init() {}

    package static let sql = """
        SELECT scope, key, extract(epoch FROM since)::float8 AS since, extract(epoch FROM until)::float8 AS until,
               reason, cleared_by
        FROM sms.fraud_blocks
        WHERE until > now()
        ORDER BY since DESC, scope, key
        LIMIT 10000
        """

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> [FraudBlock] {
        try rows.rows.map { row in
            let stored = try row.requiredString("scope")
            guard let scope = FraudBlock.Scope(rawValue: stored) else {
                throw PostgresError(code: .badValue, message: "sms.fraud_blocks holds an unknown scope \(stored.prefix(40))")
            }
            return FraudBlock(
                scope: scope, key: try row.requiredString("key"), since: try row.requiredDouble("since"),
                until: try row.requiredDouble("until"), reason: try row.requiredString("reason"),
                clearedBy: try row.string("cleared_by"))
        }
    }
}
