import Synchronization

/// Paces this daemon's API calls so the whole cluster stays under `rate_limit.requests_per_second`
/// (GenAuth answers real HTTP 429 past its QPS limit). Each live daemon (per `sms.workers`) takes an
/// equal share. An HTTP 429 halves the pace; it recovers by a tenth of the share per second without one.
///
/// Hand-written rather than taken from a library: none of the ecosystem packages here has a rate
/// limiter, and this one is a few lines of GCRA-style spacing (no bursts: a call every 1/rate s).
/// It paces at 95% of the share so that jitter on the way never pushes a second over the limit.
public final class RateLimiter: Sendable {
    private struct State {
        var next: ContinuousClock.Instant
        var liveWorkers = 1
        var slowdown = 1.0
        var lastAdjustment: ContinuousClock.Instant
    }

    public let clusterRate: Double
    static let headroom = 0.95
    static let minimumSlowdown = 0.05
    private let state: Mutex<State>

    public init(clusterRate: Double) {
        self.clusterRate = clusterRate
        let now = ContinuousClock.now
        self.state = Mutex(State(next: now, lastAdjustment: now))
    }

    /// This daemon's current pace in calls per second (0: unlimited).
    public var currentRate: Double {
        state.withLock { Self.rate(clusterRate, $0) }
    }

    public func setLiveWorkers(_ count: Int) {
        state.withLock { $0.liveWorkers = max(1, count) }
    }

    /// Takes the next call slot: when the call may start, or nil for at once (the GenAuth client
    /// schedules the call for it on its loop).
    public func reserveSlot() -> ContinuousClock.Instant? {
        guard clusterRate > 0 else { return nil }
        let slot: ContinuousClock.Instant = state.withLock { state in
            let now = ContinuousClock.now
            // Recover from a slowdown gradually while no 429 arrives.
            if state.slowdown < 1 {
                let calm = (now - state.lastAdjustment).seconds
                if calm >= 1 {
                    state.slowdown = min(1, state.slowdown + 0.1 * calm)
                    state.lastAdjustment = now
                }
            }
            let interval = 1 / Self.rate(clusterRate, state)
            let slot = max(now, state.next)
            state.next = slot + .nanoseconds(Int64(interval * 1e9))
            return slot
        }
        return slot > .now ? slot : nil
    }

    /// GenAuth answered HTTP 429: slow down (at most once per half second, as a burst of 429s is one signal).
    public func throttled() {
        state.withLock { state in
            let now = ContinuousClock.now
            guard now - state.lastAdjustment >= .milliseconds(500) || state.slowdown == 1 else { return }
            state.slowdown = max(Self.minimumSlowdown, state.slowdown * 0.5)
            state.lastAdjustment = now
        }
    }

    private static func rate(_ cluster: Double, _ state: State) -> Double {
        guard cluster > 0 else { return 0 }
        return cluster * headroom / Double(state.liveWorkers) * state.slowdown
    }
}
