/// The cluster-wide throttle's answer for one job (`sms.reserve_sends`).
package enum Reservation: Sendable, Equatable {
    /// Send it, starting `slot` from now (by the cluster's rate schedule; zero without a rate limit).
    case granted(slot: Duration)
    /// The phone+channel window is open until this epoch second.
    case deferred(until: Double)
    /// A per-phone cap was reached; the text names it.
    case capped(String)
    /// Stopped by the fraud guard (`fraud.mode: enforce`): rejected, no attempt used, no call. `rule`
    /// nil: a rule this daemon does not know (a newer schema's); the message starts `fraud guard:`.
    case fraud(rule: FraudRule?, message: String)
    /// Its channel was paused after the claim; the text is the pause's message. Not sent, no attempt
    /// used: back to pending (the claim skips it until the pause ends).
    case paused(String)
    /// Another session held the job's row, or the lock of its phone or of a fraud key, for a moment
    /// (only daemons can): decided again after `retryIn`, no attempt used. The rest of the batch goes on.
    case busy(retryIn: Duration)
    /// The job is no longer running under this claim (its lease ran out and it was rescued, maybe
    /// claimed by another worker): it must not be sent, and its outcome is not ours to write.
    case lost
}
