/// What wakes the claim loop, typed: the loop reacts to each event instead of polling shared state to
/// find out what happened (as `ServiceGroup` loops over its `ChildTaskResult`s).
enum DispatchEvent: Sendable, Equatable {
    /// `NOTIFY sms_jobs` (an insert, a requeue), or a LISTEN session (re)started: jobs may be due.
    case jobsAvailable
    /// The poll interval passed: the fallback for a lost notification.
    case tick
    /// The loop's clock, at least every `WakeSource.clockInterval` whatever the poll interval: it
    /// feeds systemd's watchdog (`WatchdogSec=30s`: with ticks alone, a `poll_interval` of a minute
    /// would starve it and get an idle daemon restarted) and lets a draining shutdown see its
    /// deadline. It says nothing of the queue.
    case clock
    /// This many calls answered (or failed); their outcomes are with the writer.
    case callsFinished(Int)
    /// The writer wrote (or gave up on) a batch: jobs it held may be claimable, a shutdown may be done.
    case outcomesWritten
    /// A few free call slots waited for company long enough (see `ClaimLoop.claimLinger`).
    case lingerElapsed
    /// A busy loop's recheck interval passed (see `ClaimLoop.StateMachine.recheck`).
    case recheckElapsed
    /// SIGTERM/SIGINT: stop claiming, drain.
    case shutdownRequested
}

/// The claim loop's inbox. Producers on any thread `send`; the loop takes everything that arrived
/// since its last turn in one `next()` (events of one kind coalesce: a hundred call completions are
/// one `.callsFinished(100)`), so a burst costs the loop one turn, not one per event.
final class DispatchEvents: Sendable {
    private struct State: Sendable {
        var finishedCalls = 0
        /// Pending events other than call completions, each at most once, in arrival order.
        var flags: [DispatchEvent] = []
        var closed = false

        var isReady: Bool { closed || finishedCalls > 0 || !flags.isEmpty }
    }
    private let inbox = Inbox(State())

    func send(_ event: DispatchEvent) {
        inbox.update { state in
            guard !state.closed else { return }
            if case .callsFinished(let count) = event {
                state.finishedCalls += count
            } else if !state.flags.contains(event) {
                state.flags.append(event)
            }
        }
    }

    /// The events since the last call, once there is at least one; nil after `close()` or when the
    /// task is cancelled (the loop ends either way).
    func next() async -> [DispatchEvent]? {
        await inbox.take(when: \.isReady, Self.takeAll) ?? nil
    }

    /// The events since the last call, without waiting: none if nothing came; nil after `close()`.
    func takeNow() -> [DispatchEvent]? {
        inbox.withState(Self.takeAll)
    }

    /// Everything pending, emptied; nil once closed.
    private static func takeAll(_ state: inout State) -> [DispatchEvent]? {
        guard !state.closed else { return nil }
        var events = state.flags
        if state.finishedCalls > 0 { events.append(.callsFinished(state.finishedCalls)) }
        state.flags.removeAll(keepingCapacity: true)
        state.finishedCalls = 0
        return events
    }

    /// Sends `event` once `delay` has passed (the claim loop's linger and recheck timers).
    func send(_ event: DispatchEvent, after delay: Duration) {
        Task { [self] in
            try? await Task.sleep(for: delay)
            send(event)
        }
    }

    func close() { inbox.update { $0.closed = true } }
}
