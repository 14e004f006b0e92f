import PostgresClient

/// The fraud guard's decisions per rule in the last hour, cluster-wide (the guard's `rule` counters):
/// what `status` and `fraud list` show.
package struct FraudDecisionCounts: Statement {
    package struct Count: Sendable, Equatable, Codable {
        /// `per_ip_hour`, `prefix_block`, ...
        package var rule: String
        /// `blocked` or `flagged` (monitor mode).
        package var decision: String
        package var count: Int
    }

    package init() {}

    package static let isPrepared = false
    package static let sql = """
        SELECT split_part(key, ':', 1) AS rule, split_part(key, ':', 2) AS decision, sum(requests)::int AS n
        FROM sms.fraud_counts
        WHERE scope = 'rule' AND minute >= date_trunc('minute', now() - interval '1 hour')
        GROUP BY 1, 2
        ORDER BY 3 DESC, 1, 2
        """

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> [Count] {
        try rows.rows.map { row in
            Count(
                rule: try row.requiredString("rule"), decision: try row.requiredString("decision"),
                count: try row.requiredInt("n"))
        }
    }
}

extension PostgresConnection {
    /// The guard's decisions per rule in the last hour, or why they cannot be read: a hot standby
    /// cannot read the guard's counters (UNLOGGED), and `status` and `fraud list` must still work there.
    package func fraudDecisionsIfReadable() async -> Result<[FraudDecisionCounts.Count], any Error> {
        do {
            return .success(try await run(FraudDecisionCounts()))
        } catch {
            return .failure(error)
        }
    }
}
