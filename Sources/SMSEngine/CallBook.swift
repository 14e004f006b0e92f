import SMSModel
import Synchronization

/// The calls this daemon has started and not yet seen the end of, each with the latest moment its end
/// can come: its slot, the call's timeout (the connection pool fails any call by then) and a margin.
/// A call slot of the claim loop is a loan: if a call's end never came by that moment (a lost completion,
/// whatever its cause), `overdue` hands the call back so that the loop can write its job as unanswered
/// (its SMS may have gone out) and free the slot. Nothing can then hold a slot for longer: a daemon
/// whose slots all leaked would otherwise make no call at all while it looked healthy.
///
/// The end that comes first (the call's own, or `overdue`) frees the slot (`finish` says which); the
/// call's own outcome is written whenever it comes, since it is the truth.
final class CallBook: Sendable {
    struct Call: Sendable {
        let job: ValidJob
        let triage: Triage
        let started: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant
    }

    /// By claim (job and token): a job claimed again by this process while its earlier call is still
    /// in the book is another loan.
    private let calls = Mutex<[JobLease: Call]>([:])

    /// Beyond its timeout, how long a call's end may take to reach the claim loop.
    static let margin = Duration.seconds(5)

    func open(_ job: ValidJob, triage: Triage, startingAt start: ContinuousClock.Instant, timeout: Duration) {
        let call = Call(job: job, triage: triage, started: start, deadline: start + timeout + Self.margin)
        calls.withLock { $0[job.lease] = call }
    }

    /// The call of this claim of a job ended. True when this frees its slot; false when `overdue` freed
    /// it already.
    func finish(_ job: JobLease) -> Bool {
        calls.withLock { $0.removeValue(forKey: job) != nil }
    }

    /// Whether the call is still on loan (not reclaimed as overdue): a call waiting for its slot is made
    /// only then.
    func holds(_ job: JobLease) -> Bool {
        calls.withLock { $0[job] != nil }
    }

    /// The calls whose end has not come by their deadline, taken out of the book.
    func overdue(now: ContinuousClock.Instant = .now) -> [Call] {
        calls.withLock { calls in
            let late = calls.values.filter { $0.deadline < now }
            for call in late { calls[call.job.lease] = nil }
            return late
        }
    }

    var count: Int { calls.withLock { $0.count } }
}
