import Synchronization

/// Lets a condition that recurs on every batch (the NOTIFY queue full) be logged once a minute, not
/// once per batch: at 500 jobs/s a line per write would flood the journal and hide everything else.
final class OccasionalLog: Sendable {
    private let last = Mutex<ContinuousClock.Instant?>(nil)
    let every: Duration

    init(every: Duration = .seconds(60)) { self.every = every }

    /// True at most once per `every`.
    func due(now: ContinuousClock.Instant = .now) -> Bool {
        last.withLock { last in
            if let previous = last, now - previous < every { return false }
            last = now
            return true
        }
    }
}
