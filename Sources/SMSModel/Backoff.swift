/// Exponential backoff with jitter for retries: attempt n waits about base·2^(n-1), capped, and
/// "equal jitter" keeps half of it fixed so a retry never comes back almost at once, while the other
/// half spreads a burst of failures out. A `Retry-After` from the server wins when it is longer, even
/// past `maximum` (the server knows when it will take calls again), up to an hour.
package struct Backoff: Sendable, Equatable {
    package var base: Duration
    package var maximum: Duration
    /// A larger `Retry-After` is taken as a server bug, not an instruction.
    static let longestRetryAfter = Duration.seconds(3600)

    package init(base: Duration = .seconds(2), maximum: Duration = .seconds(300)) {
        self.base = base
        self.maximum = maximum
    }

    /// The wait after the `attempt`-th call (1-based) failed.
    package func delay(
        afterAttempt attempt: Int, retryAfter: Duration? = nil,
        random: Double = Double.random(in: 0...1)
    ) -> Duration {
        let exponent = max(0, min(attempt - 1, 30))
        let ceiling = min(maximum.seconds, base.seconds * Double(1 << exponent))
        let jittered = Duration.seconds(double: ceiling / 2 + ceiling / 2 * random)
        if let retryAfter, retryAfter > jittered { return min(retryAfter, max(maximum, Self.longestRetryAfter)) }
        return jittered
    }
}
