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
        switch outcome.next {
        case .finished(.sent): sent += 1
        case .finished(.failed): failed += 1
        case .finished(.superseded): superseded += 1
        case .finished(.rejected): rejected += 1
        case .finished(.expired): expired += 1
        case .finished: break
        case .deferred: deferred += 1
        case .retry, .putBack: retried += 1
        }
    }
}
