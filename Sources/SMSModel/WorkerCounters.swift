/// The worker row's counters (cumulative since start).
public struct WorkerCounters: Sendable, Equatable {
    public var claimed = 0
    public var sent = 0
    public var failed = 0
    public var retried = 0
    public var rejected = 0
    public var expired = 0
    public var deferred = 0
    public var superseded = 0
    public init() {}

    public mutating func count(_ outcome: JobOutcome) {
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
