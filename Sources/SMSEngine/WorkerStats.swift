import SMSModel
import Synchronization

/// What the heartbeat reports about this process (`sms.workers`, the systemd STATUS line): calls in
/// flight and the outcome counters. Written by the claim loop and the call completions, read by the
/// heartbeat; each count also goes to the metrics.
final class WorkerStats: Sendable {
    private struct State {
        var inFlight = 0
        var counters = WorkerCounters()
    }
    private let state = Mutex(State())
    private let metrics: DispatcherMetrics

    init(metrics: DispatcherMetrics) { self.metrics = metrics }

    func count(_ outcome: JobOutcome) {
        state.withLock { $0.counters.count(outcome) }
        metrics.outcome(outcome)
    }

    func count<S: Sequence>(_ outcomes: S) where S.Element == JobOutcome {
        for outcome in outcomes { count(outcome) }
    }

    func countClaimed(_ n: Int) {
        state.withLock { $0.counters.claimed += n }
        metrics.claimed.increment(by: n)
    }

    func setInFlight(_ n: Int) {
        state.withLock { $0.inFlight = n }
        metrics.inFlight.record(n)
    }

    func snapshot() -> (inFlight: Int, counters: WorkerCounters) { state.withLock { ($0.inFlight, $0.counters) } }
}
