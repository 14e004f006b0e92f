import Synchronization

/// Stops calling GenAuth while it is down, so jobs wait instead of burning their attempts.
///
/// Closed: calls go out; `threshold` consecutive transient failures (timeouts, connection errors,
/// 5xx and 60x answers) open it. Open: no calls for the cool-down; the dispatcher defers jobs until
/// then. Half-open: one probe call goes out; success closes the breaker, failure opens it again for
/// twice the previous cool-down (capped at `maximumCoolDown`). Hand-written: a few lines of state, and
/// no ecosystem package here offers one.
public final class CircuitBreaker: Sendable {
    public enum Phase: String, Sendable { case closed, open, halfOpen = "half-open" }

    /// What the dispatcher may do with a batch now.
    public enum Admission: Sendable, Equatable {
        /// Send them all.
        case all
        /// Send this many (a half-open probe); defer the rest for `retryIn` seconds.
        case probe(count: Int, retryIn: Double)
        /// Send none; try again in this many seconds.
        case none(retryIn: Double)
    }

    private struct State {
        var phase = Phase.closed
        var consecutiveFailures = 0
        var coolDown: Double
        var reopensAt = ContinuousClock.now
        var probeInFlight = false
        var opened = 0
    }

    public let threshold: Int
    public let baseCoolDown: Double
    public let maximumCoolDown: Double
    private let state: Mutex<State>

    public init(threshold: Int, coolDown: Double, maximumCoolDown: Double = 300) {
        self.threshold = threshold
        self.baseCoolDown = coolDown
        self.maximumCoolDown = max(coolDown, maximumCoolDown)
        self.state = Mutex(State(coolDown: coolDown))
    }

    public var phase: Phase { state.withLock { Self.advance(&$0).phase } }
    /// How many times it has opened since start.
    public var timesOpened: Int { state.withLock { $0.opened } }

    public func admit(_ count: Int) -> Admission {
        guard threshold > 0, count > 0 else { return .all }
        return state.withLock { state in
            Self.advance(&state)
            switch state.phase {
            case .closed:
                return .all
            case .open:
                return .none(retryIn: max(0.05, (state.reopensAt - .now).seconds))
            case .halfOpen:
                if state.probeInFlight { return .none(retryIn: 1) }
                state.probeInFlight = true
                return .probe(count: 1, retryIn: 1)
            }
        }
    }

    /// Reports one call's verdict. Returns the new phase when this call changed it (for logging).
    @discardableResult
    public func record(_ verdict: Verdict, isServerFault: Bool) -> Phase? {
        guard threshold > 0 else { return nil }
        return state.withLock { state in
            Self.advance(&state)
            let before = state.phase
            if !isServerFault {
                // An answer that is not GenAuth failing (sent, or the caller's fault): it is up.
                state.consecutiveFailures = 0
                state.phase = .closed
                state.coolDown = baseCoolDown
                state.probeInFlight = false
            } else {
                state.consecutiveFailures += 1
                if before == .halfOpen {
                    state.coolDown = min(maximumCoolDown, state.coolDown * 2)
                    open(&state)
                } else if before == .closed && state.consecutiveFailures >= threshold {
                    open(&state)
                }
            }
            return state.phase == before ? nil : state.phase
        }
    }

    private func open(_ state: inout State) {
        state.phase = .open
        state.reopensAt = .now + .milliseconds(Int64(state.coolDown * 1000))
        state.probeInFlight = false
        state.opened += 1
    }

    @discardableResult
    private static func advance(_ state: inout State) -> State {
        if state.phase == .open && ContinuousClock.now >= state.reopensAt {
            state.phase = .halfOpen
            state.probeInFlight = false
        }
        return state
    }
}
