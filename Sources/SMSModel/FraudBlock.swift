/// An anomaly block of the fraud guard (`sms.fraud_blocks`): a number prefix or a country whose
/// traffic was far above its baseline with almost no codes verified.
public struct FraudBlock: Sendable, Equatable, Codable {
    public enum Scope: String, Sendable, CaseIterable, Codable {
        case prefix
        case country
    }

    public var scope: Scope
    /// `+86 1380013` (a prefix) or `+62` (a country).
    public var key: String
    /// Epoch seconds.
    public var since: Double
    public var until: Double
    public var reason: String
    /// Who ended it early (`sms-dispatcher fraud unblock`), if anyone.
    public var clearedBy: String?

    /// A block's identity: one per scope and key.
    public struct ID: Hashable, Sendable {
        public var scope: Scope
        public var key: String
    }

    public var id: ID { ID(scope: scope, key: key) }

    public init(scope: Scope, key: String, since: Double, until: Double, reason: String, clearedBy: String? = nil) {
        self.scope = scope
        self.key = key
        self.since = since
        self.until = until
        self.reason = reason
        self.clearedBy = clearedBy
    }
}
