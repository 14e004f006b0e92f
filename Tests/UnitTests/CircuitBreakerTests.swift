import Testing

@testable import SMSEngine

/// The breaker's bookkeeping as a pure value: every step takes `now`, so no test sleeps.
@Suite("Circuit breaker")
struct CircuitBreakerTests {
    let start = ContinuousClock.now

    func opened(threshold: Int = 2, coolDown: Duration = .seconds(1)) -> CircuitBreaker.State {
        var state = CircuitBreaker.State(threshold: threshold, coolDown: coolDown, probeTimeout: .seconds(15), now: start)
        for _ in 0..<threshold { _ = state.record(isServerFault: true, now: start) }
        return state
    }

    @Test func opensAfterThresholdAndProbesAfterCoolDown() {
        var state = opened()
        #expect(state.phase == .open)
        #expect(state.admit(5, now: start + .milliseconds(500)) == .none(retryIn: .milliseconds(500)))
        #expect(state.admit(5, now: start + .seconds(1)) == .probe(count: 1, retryIn: .seconds(1)))
        // One probe at a time.
        #expect(state.admit(5, now: start + .seconds(1)) == .none(retryIn: .seconds(1)))
        #expect(state.record(isServerFault: false, now: start + .seconds(2)) == .closed)
        #expect(state.admit(5, now: start + .seconds(2)) == .all)
    }

    @Test("a probe whose job made no call is handed back, and the next batch probes")
    func releasedProbe() {
        var state = opened()
        #expect(state.admit(1, now: start + .seconds(1)) == .probe(count: 1, retryIn: .seconds(1)))
        state.releaseProbe()
        #expect(state.admit(1, now: start + .seconds(1)) == .probe(count: 1, retryIn: .seconds(1)))
    }

    @Test("a probe neither answered nor handed back is taken as lost after its timeout")
    func lostProbe() {
        var state = opened()
        #expect(state.admit(1, now: start + .seconds(1)) == .probe(count: 1, retryIn: .seconds(1)))
        #expect(state.admit(1, now: start + .seconds(10)) == .none(retryIn: .seconds(1)))
        #expect(state.admit(1, now: start + .seconds(16)) == .probe(count: 1, retryIn: .seconds(1)))
    }

    /// Issue 26: the cool-down never grows (it doubled up to 5 minutes, holding OTPs for minutes after
    /// GenAuth healed): however many probes failed, the next comes one cool-down later.
    @Test func failedProbesKeepTheCoolDown() {
        var state = opened(coolDown: .seconds(1))
        var now = start + .seconds(1)
        for round in 1...8 {
            #expect(state.admit(1, now: now) == .probe(count: 1, retryIn: .seconds(1)), "round \(round)")
            #expect(state.record(isServerFault: true, now: now) == .open)
            #expect(state.admit(1, now: now + .milliseconds(900)) == .none(retryIn: .milliseconds(100)))
            now += .seconds(1)
        }
        #expect(state.timesOpened == 9)
        // Healed: the next probe's answer closes it.
        #expect(state.admit(1, now: now) == .probe(count: 1, retryIn: .seconds(1)))
        #expect(state.record(isServerFault: false, now: now) == .closed)
    }

    @Test func disabledAdmitsEverything() {
        var state = CircuitBreaker.State(threshold: 0, coolDown: .seconds(1), probeTimeout: .seconds(1), now: start)
        _ = state.record(isServerFault: true, now: start)
        #expect(state.admit(3, now: start) == .all)
    }
}

/// A reload's new threshold and cool-down (SIGHUP).
@Suite("Circuit breaker reload")
struct CircuitBreakerReloadTests {
    let start = ContinuousClock.now

    @Test("a lower threshold opens on the next failure; the failures counted so far stay")
    func lowerThreshold() {
        var state = CircuitBreaker.State(threshold: 10, coolDown: .seconds(1), probeTimeout: .seconds(15), now: start)
        for _ in 0..<3 { _ = state.record(isServerFault: true, now: start) }
        #expect(state.phase == .closed)
        state.reconfigure(threshold: 3, coolDown: .seconds(2))
        #expect(state.record(isServerFault: true, now: start) == .open)
        // The new cool-down: still open after 1 s, half-open after 2 s.
        #expect(state.admit(1, now: start + .seconds(1)) == .none(retryIn: .seconds(1)))
        #expect(state.admit(1, now: start + .seconds(2)) == .probe(count: 1, retryIn: .seconds(1)))
    }

    @Test("an open breaker ends its cool-down; turned off it closes and admits everything")
    func turnedOff() {
        var state = CircuitBreaker.State(threshold: 1, coolDown: .seconds(10), probeTimeout: .seconds(15), now: start)
        _ = state.record(isServerFault: true, now: start)
        state.reconfigure(threshold: 1, coolDown: .seconds(1))
        #expect(state.phase == .open)
        #expect(state.admit(1, now: start + .seconds(5)) == .none(retryIn: .seconds(5)))
        state.reconfigure(threshold: 0, coolDown: .seconds(1))
        #expect(state.phase == .closed && state.admit(3, now: start + .seconds(5)) == .all)
    }

    @Test func configurationInForce() {
        let breaker = CircuitBreaker(configuration: .init())
        var changed = CircuitBreaker.Configuration()
        changed.threshold = 2
        changed.coolDown = .seconds(3)
        breaker.reconfigure(changed)
        #expect(breaker.configuration == changed)
    }
}
