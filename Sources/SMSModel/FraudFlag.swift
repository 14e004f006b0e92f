/// What the fraud guard said of one job in monitor mode: it would have stopped it (it was sent).
public struct FraudFlag: Sendable, Equatable {
    /// nil: a rule this daemon does not know.
    public var rule: FraudRule?
    /// `fraud guard (monitor mode, sent): <rule>: ...`
    public var message: String

    public init(rule: FraudRule?, message: String) {
        self.rule = rule
        self.message = message
    }
}
