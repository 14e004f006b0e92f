/// What the fraud guard said of one job in monitor mode: it would have stopped it (it was sent).
package struct FraudFlag: Sendable, Equatable {
    /// nil: a rule this daemon does not know.
    package var rule: FraudRule?
    /// `fraud guard (monitor mode, sent): <rule>: ...`
    package var message: String

    package init(rule: FraudRule?, message: String) {
        self.rule = rule
        self.message = message
    }
}
