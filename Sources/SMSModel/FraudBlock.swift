/// An anomaly block of the fraud guard (`sms.fraud_blocks`): a number prefix or a country whose
/// traffic was far above its baseline with almost no codes verified.
package struct FraudBlock: Sendable, Equatable, Codable {
    package enum Scope: String, Sendable, CaseIterable, Codable {
        case prefix
        case country
    }

    package var scope: Scope
    /// `+86 1380013` (a prefix) or `+62` (a country).
    package var key: String
    /// Epoch seconds.
    package var since: Double
    package var until: Double
    package var reason: String
    /// Who ended it early (`sms-dispatcher fraud unblock`), if anyone.
    package var clearedBy: String?

    /// A block's identity: one per scope and key.
    package struct ID: Hashable, Sendable {
        package var scope: Scope
        package var key: String
    }

    package var id: ID { ID(scope: scope, key: key) }

    package init(scope: Scope, key: String, since: Double, until: Double, reason: String, clearedBy: String? = nil) {
        self.scope = scope
        self.key = key
        self.since = since
        self.until = until
        self.reason = reason
        self.clearedBy = clearedBy
    }
}
