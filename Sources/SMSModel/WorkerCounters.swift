/// The worker row's counters (cumulative since start).
package struct WorkerCounters: Sendable, Equatable {
    package var claimed = 0
    package var sent = 0
    package var failed = 0
    package var retried = 0
    package var rejected = 0
    package var expired = 0
    package var deferred = 0
    package var superseded = 0
    package init() {}

    package mutating func count(_ outcome: JobOutcome) {
        switch outcome.state {
        case .sent: sent += 1
        case .failed: failed += 1
        case .pending where outcome.deferredUntil != nil: deferred += 1
        case .pending: retried += 1
        case .superseded: superseded += 1
        case .rejected: rejected += 1
        case .expired: expired += 1
        default: break
        }
    }
}
