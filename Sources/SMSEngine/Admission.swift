import PostgresClient
import SMSJobStore
import SMSModel

/// Between triage and the call: which of the sendable jobs may be sent now. One job per phone and
/// channel per round; the circuit breaker (while GenAuth is down jobs wait, unreserved and with no
/// attempt used); then the cluster-wide throttle in the database (`sms.reserve_sends`: the phone's
/// window, the per-phone caps, the fraud guard, a slot in the cluster's rate schedule, and whether the
/// job is still ours). `plan` and `apply` are pure; `reserve` runs the statement (a chunk of jobs at a time).
package struct Admission: Sendable {
    /// `throttle.window`, `caps.*`, `rate_limit.*`, `fraud.*`.
    package struct Configuration: Sendable, Equatable {
        /// One SMS per phone per channel in this window (GenAuth allows one a minute).
        package var throttleWindow = Duration.seconds(60)
        /// SMS per phone (all channels) per rolling hour / day; 0 disables the cap.
        package var capPerPhoneHour = 5
        package var capPerPhoneDay = 10
        /// API requests per second for the whole cluster (GenAuth's free tier allows 300); 0 disables.
        package var rateLimit = 300.0
        /// The fraud guard's settings: its mode and limits for the reservation, its anomaly model for
        /// `FraudWatch` (which reads them here, live).
        package var fraud = FraudSettings()

        package init() {}
    }

    /// The cluster's rate schedule spaces calls at 90% of `rate_limit`: a call leaves up to a tenth of a
    /// second after its slot when this host's event loop is busy, and calls of two daemons delayed
    /// that way must still fit in GenAuth's second.
    static let rateHeadroom = 0.9

    let configuration: Configuration
    let breaker: CircuitBreaker
    let triage: Triage
    /// The claim loop's: a retry due now is claimed within it (`ProofWindow.lead`).
    var pollInterval = Duration.seconds(1)

    /// This round's batch, and what the breaker decided.
    struct Plan: Sendable, Equatable {
        /// To reserve now: one per phone and channel.
        var batch: [ValidJob] = []
        /// Another job for a phone and channel already in the batch: waits a round, and is then
        /// deferred properly by the throttle.
        var nextRound: [ValidJob] = []
        /// Deferred by the breaker, no attempt used.
        var settled: [JobOutcome] = []
        /// The job carrying the half-open breaker's probe, if any: the probe must be handed back if
        /// this job makes no call.
        var probe: Int64? = nil
    }

    /// `now`: the loop's instant (passed in: the plan reads no clock).
    func plan(_ candidates: [ValidJob], now: ContinuousClock.Instant = .now) -> Plan {
        var plan = Plan()
        var seen = Set<String>()
        for job in candidates {
            if seen.insert(job.phoneKey + "|" + job.channel.rawValue).inserted {
                plan.batch.append(job)
            } else {
                plan.nextRound.append(job)
            }
        }
        let held: ArraySlice<ValidJob>
        let retryIn: Duration
        switch breaker.admit(plan.batch.count) {
        case .all:
            return plan
        case .probe(let count, let wait):
            // Not a job whose earlier call may have gone out, if there is another: those are claimed
            // first, and as the probe every time they would spend their attempts on a failing GenAuth.
            if let sure = plan.batch.firstIndex(where: { !$0.uncertain }), sure > 0 {
                plan.batch.insert(plan.batch.remove(at: sure), at: 0)
            }
            plan.probe = plan.batch.first?.id
            held = plan.batch.dropFirst(count)
            plan.batch = Array(plan.batch.prefix(count))
            retryIn = wait
        case .none(let wait):
            held = plan.batch[...]
            plan.batch = []
            retryIn = wait
        }
        // The breaker holds calls that can wait. A retry of a call that may have gone out cannot wait
        // past its proof window (GenAuth could no longer tell whether that call went out): it comes back
        // a lead before the window closes, and then calls whatever the breaker says, once.
        for job in held {
            let back = job.claimed.databaseTime(of: now + retryIn)
            switch proofCall(job, at: now) {
            case .now?:
                plan.batch.append(job)
            case .comeBack(let latest)?:
                plan.settled.append(breakerDeferral(job, until: min(back, latest)))
            case nil:
                plan.settled.append(breakerDeferral(job, until: back))
            }
        }
        return plan
    }

    /// When a retry that may prove an earlier call went out must be made.
    enum ProofCall: Equatable {
        /// Less than the lead is left before its window closes, more than the margin: call now, or never.
        case now
        /// Come back by this moment (database clock) at the latest.
        case comeBack(by: Double)
    }

    /// For a job whose earlier call may have gone out and whose proof window is still open at `now`;
    /// nil otherwise. The lead is `ProofWindow.lead` for this loop's poll interval.
    func proofCall(_ job: ValidJob, at now: ContinuousClock.Instant) -> ProofCall? {
        guard case .open(let closes) = job.claimed.proof(at: now) else { return nil }
        let latest = closes - ProofWindow.lead(pollInterval: pollInterval).seconds
        return job.claimed.databaseTime(of: now) >= latest ? .now : .comeBack(by: latest)
    }

    private func breakerDeferral(_ job: ValidJob, until: Double) -> JobOutcome {
        triage.deferral(
            job, until: until,
            reason:
                "GenAuth is failing: circuit breaker open after \(breaker.configuration.threshold) consecutive transient failures (breaker.*)"
        )
    }

    /// Jobs per reservation statement. The reservation holds a row lock per phone and per fraud key (up
    /// to five per job, rows of `sms.key_locks`) and the jobs' rows until it commits: a daemon with
    /// thousands of calls in flight reserving them all in one statement would hold them all for as long
    /// (and, when these were advisory locks, could fill PostgreSQL's shared lock table).
    static let reservationChunk = 256

    /// Asks for one chunk's verdicts in the open transaction and commits it, in one round trip
    /// (`runAndCommit`), from the connection's thread. A failure throws: nothing of it may be kept.
    func reserveAndCommit(_ chunk: [ValidJob], on session: PostgresConnection.Session) throws -> ReserveSends.Answer {
        precondition(chunk.count <= Self.reservationChunk, "one chunk commits with its transaction")
        return try session.runAndCommit(statement(for: chunk))
    }

    /// One chunk's verdicts outside a transaction (the statement commits on its own), from the
    /// connection's thread: the reservation of jobs claimed in earlier turns, when nothing is claimed.
    func reserveAlone(_ chunk: [ValidJob], on session: PostgresConnection.Session) throws -> ReserveSends.Answer {
        precondition(chunk.count <= Self.reservationChunk, "one chunk at a time")
        return try session.run(statement(for: chunk))
    }

    private func statement(for chunk: [ValidJob]) -> ReserveSends {
        ReserveSends(
            jobs: chunk, window: configuration.throttleWindow, hourCap: configuration.capPerPhoneHour,
            dayCap: configuration.capPerPhoneDay, rate: configuration.rateLimit * Self.rateHeadroom,
            fraud: configuration.fraud, proofMargin: ProofWindow.margin)
    }

    /// The batch, sorted by its verdicts.
    struct Verdicts: Sendable {
        /// Send, each at its slot.
        var granted: [(job: ValidJob, slot: Duration)] = []
        /// Deferred by the phone's window, rejected by a cap or the fraud guard, or put back by a pause.
        var settled: [JobOutcome] = []
        /// No longer ours (rescued from under us): no call, and no outcome of ours to write.
        var lost: [ValidJob] = []
        /// No verdict came back: ask again next round.
        var unanswered: [ValidJob] = []
    }

    func apply(_ verdicts: [Int64: Reservation], to batch: [ValidJob]) -> Verdicts {
        var result = Verdicts()
        for job in batch {
            switch verdicts[job.id] {
            case .granted(let slot): result.granted.append((job, slot))
            case .lost: result.lost.append(job)
            case .deferred(let until): result.settled.append(triage.deferral(job, until: until))
            case .capped(let reason): result.settled.append(JobOutcome(job: job.lease, state: .rejected, message: reason))
            case .fraud(_, let message): result.settled.append(JobOutcome(job: job.lease, state: .rejected, message: message))
            case .paused(let message):
                result.settled.append(.putBack(job.lease, because: message))
            case .busy(let retryIn):
                // Another session held the job's row or one of its keys for a moment: this job alone waits.
                result.settled.append(
                    JobOutcome(
                        job: job.lease, next: .retry(in: retryIn),
                        message:
                            "waiting: another session held this job's phone or row for a moment; next try in \(retryIn.seconds) s"
                    ))
            case nil: result.unanswered.append(job)
            }
        }
        return result
    }
}
