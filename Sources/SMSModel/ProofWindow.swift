/// How long GenAuth can prove that an earlier call of a job went out. GenAuth sends one SMS per phone
/// per channel per minute: while that minute lasts, a second call for the same phone and channel is
/// answered "sent too frequently" (HTTP 200, body `statusCode` 429) if the first was accepted, and that
/// answer is the proof. A call whose answer never came (a timeout, a lost connection, a gateway's answer,
/// a daemon that died during it) is retried within that minute for that reason; past it, a retry that
/// GenAuth accepts may be a second SMS, and the row says so.
///
/// The minute runs from when GenAuth accepted the call, which is after the call started: the window
/// here counts from the call's start, so it never outlasts GenAuth's.
package struct ProofWindow: Sendable, Equatable {
    /// GenAuth's one-SMS-per-phone-per-channel window.
    package static let genauthMinute = Duration.seconds(60)
    /// A retry must leave this long before the window closes, to reach GenAuth inside it.
    package static let margin = Duration.seconds(1)

    /// `throttle.window` when it is shorter than GenAuth's minute (a test's sandbox), else the minute.
    package let length: Duration

    package init(throttleWindow: Duration) {
        length = min(throttleWindow, Self.genauthMinute)
    }

    /// When the window closes for a call that started at `start` (epoch seconds, database clock).
    package func closes(afterCallAt start: Double) -> Double { start + length.seconds }

    /// How long before the window closes a retry must be claimed: `margin` (its call reaching GenAuth),
    /// a second for the claim and the reservation, and the claim loop's poll interval (a job that falls
    /// due is found on the next poll tick, at most; capped at 10 s: the loop comes round that often).
    package static func lead(pollInterval: Duration) -> Duration {
        margin + .seconds(1) + min(pollInterval, .seconds(10))
    }
}

/// Where a call of a job stands with GenAuth's proof of the job's earliest unanswered call
/// (`ClaimedJob.proof(at:)`).
package enum Proof: Sendable, Equatable {
    /// No call of the job went unanswered: nothing to prove.
    case none
    /// The call reaches GenAuth while it can still prove that call; the window closes then (epoch
    /// seconds, database clock).
    case open(closes: Double)
    /// The window has closed, or too little of it is left to reach GenAuth: a call GenAuth accepts now
    /// may be a second SMS.
    case closed

    package var isOpen: Bool {
        if case .open = self { return true }
        return false
    }
}
