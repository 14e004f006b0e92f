import SMSModel
import Synchronization

/// Stops calling GenAuth while it is down, so jobs wait instead of burning their attempts.
///
/// Closed: calls go out; `threshold` consecutive transient failures (no answer, 5xx and 60x answers)
/// open it. Open: no calls for the cool-down; the dispatcher defers jobs until then. Half-open: one
/// probe call goes out; success closes the breaker, failure opens it again for the same cool-down.
/// The cool-down does not grow: codes go stale in minutes, and a breaker that doubled it after each
/// failed probe (up to 5 minutes) held every OTP for minutes after GenAuth had healed. A probe is one
/// call per cool-down per daemon; sending resumes within a cool-down (and one call) of GenAuth healing.
///
/// The probe is a loan: the job it was given to may make no call (its phone's window was held, a cap,
/// a lost lease, a database error, shutdown). The dispatcher then hands it back (`releaseProbe`), and
/// a probe neither answered nor handed back within `probeTimeout` is taken as lost, so no path can
/// leave the breaker half-open with nobody probing (every job deferred forever).
///
/// The bookkeeping is a pure value (`State`, every method takes `now`), tested without a clock; the
/// class only puts it behind a lock. Hand-written: a few lines of state, and no ecosystem package
/// here offers one.
package final class CircuitBreaker: Sendable {
    package enum Phase: String, Sendable {
        case closed, open
        case halfOpen = "half-open"
    }

    /// What the dispatcher may do with a batch now.
    package enum Admission: Sendable, Equatable {
        /// Send them all.
        case all
        /// Send this many (a half-open probe); defer the rest for `retryIn`.
        case probe(count: Int, retryIn: Duration)
        /// Send none; try again in `retryIn`.
        case none(retryIn: Duration)
    }

    package struct State: Sendable, Equatable {
        package private(set) var threshold: Int
        package private(set) var coolDown: Duration
        package let probeTimeout: Duration
        package private(set) var phase = Phase.closed
        var consecutiveFailures = 0
        var reopensAt: ContinuousClock.Instant
        /// When the probe was handed out, while one is out.
        var probeSince: ContinuousClock.Instant? = nil
        package private(set) var timesOpened = 0

        package init(threshold: Int, coolDown: Duration, probeTimeout: Duration, now: ContinuousClock.Instant) {
            self.threshold = threshold
            self.probeTimeout = probeTimeout
            self.coolDown = coolDown
            self.reopensAt = now
        }

        package mutating func advance(now: ContinuousClock.Instant) {
            if phase == .open && now >= reopensAt {
                phase = .halfOpen
                probeSince = nil
            }
            if phase == .halfOpen, let since = probeSince, now - since >= probeTimeout {
                probeSince = nil
            }
        }

        package mutating func admit(_ count: Int, now: ContinuousClock.Instant) -> Admission {
            guard threshold > 0, count > 0 else { return .all }
            advance(now: now)
            switch phase {
            case .closed:
                return .all
            case .open:
                return .none(retryIn: max(.milliseconds(50), reopensAt - now))
            case .halfOpen:
                if probeSince != nil { return .none(retryIn: .seconds(1)) }
                probeSince = now
                return .probe(count: 1, retryIn: .seconds(1))
            }
        }

        /// The probe's job made no call: the next batch may probe.
        package mutating func releaseProbe() {
            probeSince = nil
        }

        /// Reports one call's verdict. Returns the new phase when this call changed it.
        package mutating func record(isServerFault: Bool, now: ContinuousClock.Instant) -> Phase? {
            guard threshold > 0 else { return nil }
            advance(now: now)
            let before = phase
            if !isServerFault {
                // An answer that is not GenAuth failing (sent, or the caller's fault): it is up.
                consecutiveFailures = 0
                phase = .closed
                probeSince = nil
            } else {
                consecutiveFailures += 1
                if before == .halfOpen {
                    open(now: now)
                } else if before == .closed && consecutiveFailures >= threshold {
                    open(now: now)
                }
            }
            return phase == before ? nil : phase
        }

        /// A reload's new threshold and cool-down. The phase and the failures counted so far stay: an
        /// open breaker ends its current cool-down (GenAuth was failing a moment ago whatever the file
        /// says), and later cool-downs are the new one. Turned off (threshold 0), it closes.
        package mutating func reconfigure(threshold: Int, coolDown: Duration) {
            self.threshold = threshold
            self.coolDown = coolDown
            if threshold == 0 {
                phase = .closed
                consecutiveFailures = 0
                probeSince = nil
            }
        }

        private mutating func open(now: ContinuousClock.Instant) {
            phase = .open
            reopensAt = now + coolDown
            probeSince = nil
            timesOpened += 1
        }
    }

    /// `breaker.*`.
    package struct Configuration: Sendable, Equatable {
        /// Consecutive transient failures that open it; 0 turns the breaker off.
        package var threshold = 10
        /// How long it stays open before a probe call (and again after each failed probe).
        package var coolDown = Duration.seconds(10)
        package init() {}
    }

    private let state: Mutex<State>

    /// `probeTimeout`: how long a probe may stay out without an answer or a release (the call's timeout
    /// and a margin).
    package init(configuration: Configuration, probeTimeout: Duration = .seconds(30)) {
        self.state = Mutex(
            State(
                threshold: configuration.threshold, coolDown: configuration.coolDown,
                probeTimeout: probeTimeout, now: .now))
    }

    /// The configuration in force (a reload may have changed it since start).
    package var configuration: Configuration {
        state.withLock { state in
            var configuration = Configuration()
            configuration.threshold = state.threshold
            configuration.coolDown = state.coolDown
            return configuration
        }
    }

    /// A reload (SIGHUP): in force from the next admission or verdict on; see `State.reconfigure`.
    package func reconfigure(_ configuration: Configuration) {
        state.withLock { $0.reconfigure(threshold: configuration.threshold, coolDown: configuration.coolDown) }
    }

    package var phase: Phase {
        state.withLock { state in
            state.advance(now: .now)
            return state.phase
        }
    }
    /// How many times it has opened since start.
    package var timesOpened: Int { state.withLock { $0.timesOpened } }

    package func admit(_ count: Int) -> Admission { state.withLock { $0.admit(count, now: .now) } }

    package func releaseProbe() { state.withLock { $0.releaseProbe() } }

    @discardableResult
    package func record(isServerFault: Bool) -> Phase? {
        state.withLock { $0.record(isServerFault: isServerFault, now: .now) }
    }
}
