import SMSModel

/// Outcomes on their way to their rows. The writer takes them (`next()` waits until there are some,
/// or the queue is finished) and says how many it has written (`settled`); `unsettled` counts those
/// submitted and not yet written, wherever they are.
final class WriteQueue: Sendable {
    private struct State: Sendable {
        var stuckSince: ContinuousClock.Instant? = nil
        var outcomes: [JobOutcome] = []
        /// Taken by the writer and not yet written.
        var taken = 0
        var finished = false

        mutating func takeAll() -> [JobOutcome] {
            defer { outcomes = [] }
            taken += outcomes.count
            return outcomes
        }
    }
    private let inbox = Inbox(State())

    func submit(_ outcome: JobOutcome) { submit(CollectionOfOne(outcome)) }

    func submit<C: Collection>(_ outcomes: C) where C.Element == JobOutcome {
        guard !outcomes.isEmpty else { return }
        inbox.update { $0.outcomes.append(contentsOf: outcomes) }
    }

    /// Everything submitted so far, once there is something (or the queue was finished); nothing, and
    /// finished, when the writer's task is cancelled.
    func next() async -> (outcomes: [JobOutcome], finished: Bool) {
        await inbox.take(when: { !$0.outcomes.isEmpty || $0.finished }) { ($0.takeAll(), $0.finished) } ?? ([], true)
    }

    /// Everything submitted so far, without waiting.
    func takeNow() -> [JobOutcome] { inbox.withState { $0.takeAll() } }

    func settled(_ count: Int) { inbox.withState { $0.taken -= count } }

    func finish() { inbox.update { $0.finished = true } }

    /// Submitted and not yet written (or fenced out).
    var unsettled: Int { inbox.withState { $0.outcomes.count + $0.taken } }

    /// Since when writes have been failing (nil while they succeed): shown in `sms.workers` and the
    /// systemd status, so a wedged writer is visible.
    var stuckSince: ContinuousClock.Instant? {
        get { inbox.withState { $0.stuckSince } }
        set { inbox.withState { $0.stuckSince = newValue } }
    }
}
