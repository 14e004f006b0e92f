import GenAuth
import Logging
import SMSModel
import ServiceLifecycle

/// Starts the calls of granted jobs, each at its slot in the cluster's rate schedule, without waiting;
/// each call's answer is classified once, counted (metrics, breaker), turned into the job's outcome by
/// triage and handed to the writer, and the claim loop is told a call slot is free. Completions run on
/// the GenAuth client's event loop: no Swift task and no thread hop per call.
struct CallSender: Sendable {
    let client: GenAuthClient
    let breaker: CircuitBreaker
    let metrics: DispatcherMetrics
    let stats: WorkerStats
    let writes: WriteQueue
    let events: DispatchEvents
    /// Asked again when a call's slot is far off: a pause that came meanwhile holds it back.
    let pauses: PauseBoard
    /// Every call started, until its end: no slot is held past its call's timeout (`CallBook`).
    let book: CallBook
    /// `genauth.timeout`: with its slot and `CallBook.margin`, the deadline of a call's loan.
    let timeout: Duration
    let logger: Logger

    /// A call whose slot is further off than this is looked at again when its slot comes: a pause may
    /// have come in the meantime (the reservation checked for one, and a pause must hold within 2 s).
    /// Nearer slots go straight to the client's timers, without a Swift task per call.
    static let recheckBeyond = Duration.seconds(1)

    /// No call waits longer than this for its slot in the cluster's rate schedule: a slot further off
    /// (a schedule run far ahead, whatever the cause) would hold a call slot that long. Its job goes back
    /// to pending until then instead, no call, no attempt.
    static let longestSlotWait = Duration.seconds(60)

    /// `triage`: the batch's (the live settings it was claimed under), so a reload during a call does
    /// not change what its answer means (retry delays, attempts). `probe`: the job carrying the
    /// half-open breaker's probe, if any (handed back if its call is held back).
    func start(_ jobs: [(job: ValidJob, slot: Duration)], deciding triage: Triage, probe: Int64? = nil) {
        guard !jobs.isEmpty else { return }
        let now = ContinuousClock.now
        var direct: [GenAuthClient.PendingCall] = []
        for (job, slot) in jobs {
            let started = now + slot
            if slot > Self.longestSlotWait {
                if job.id == probe { breaker.releaseProbe() }
                logger.warning(
                    "call slot too far off in the cluster's rate schedule; the job waits for it unsent",
                    metadata: ["job": "\(job.id)", "slot_s": "\(Int(slot.seconds))"])
                withhold(
                    JobOutcome(
                        job: job.lease, next: .retry(in: slot),
                        message:
                            "released unsent: the cluster's rate schedule (rate_limit.requests_per_second) had no slot for \(Int(slot.seconds)) s"
                    ))
                continue
            }
            book.open(job, triage: triage, startingAt: started, timeout: timeout)
            if slot > Self.recheckBeyond {
                Task { await startAtSlot(job, at: started, triage: triage, holdsProbe: job.id == probe) }
            } else {
                direct.append(call(job, notBefore: slot > .zero ? started : nil, triage: triage))
            }
        }
        if !direct.isEmpty { client.start(direct) }
    }

    private func call(_ job: ValidJob, notBefore: ContinuousClock.Instant?, triage: Triage) -> GenAuthClient.PendingCall {
        let started = notBefore ?? .now
        return GenAuthClient.PendingCall(request: SendSMSRequest(job), notBefore: notBefore) { result in
            let outcome = finish(job, result: result, started: started, finished: .now, triage: triage)
            writes.submit(outcome)
            if book.finish(job.lease) { events.send(.callsFinished(1)) }
        }
    }

    /// Waits for the slot, then calls, unless the job's channel has been paused since its
    /// reservation: then it goes back to pending saying so (no call, no attempt).
    /// A drain that begins meanwhile releases it unsent too: its slot may lie beyond the grace period,
    /// and a call never made must not be rescued as "stopped during the API call".
    private func startAtSlot(_ job: ValidJob, at slot: ContinuousClock.Instant, triage: Triage, holdsProbe: Bool) async {
        try? await cancelWhenGracefulShutdown { try await Task.sleep(until: slot, clock: .continuous) }
        let withheld: String?
        if Task.isShuttingDownGracefully || Task.isCancelled {
            withheld = "released unsent at daemon shutdown"
        } else if let pause = pauses.pauses.pause(of: job.channel) {
            withheld =
                "paused: \(pause.scope.shown) paused by \(pause.pausedBy) before this job's call\(pause.reason.map { ": \($0)" } ?? ""); waiting (its TTL still applies)"
        } else {
            withheld = nil
        }
        guard let withheld else {
            // Reclaimed as overdue while it waited (the process was stopped past its deadline, say): its
            // job was written off as unanswered and may be anyone's now.
            guard book.holds(job.lease) else {
                if holdsProbe { breaker.releaseProbe() }
                return
            }
            client.start([call(job, notBefore: nil, triage: triage)])
            return
        }
        if holdsProbe { breaker.releaseProbe() }
        guard book.finish(job.lease) else { return }
        withhold(.putBack(job.lease, because: withheld))
    }

    /// A granted job that makes no call: back to pending, no attempt used; its call slot is free.
    private func withhold(_ outcome: JobOutcome) {
        stats.count([outcome])
        writes.submit(outcome)
        events.send(.callsFinished(1))
    }

    /// Calls whose end never came by their deadline: each job is written as unanswered (its SMS may have
    /// gone out; a retry within GenAuth's window finds out) and its call slot freed. A call's own end, if
    /// it ever comes, is written too: it is the truth.
    func reclaimOverdue() {
        for call in book.overdue() {
            logger.error(
                "a call's end never came within its timeout and margin; its job is written as unanswered and its slot freed",
                metadata: ["job": "\(call.job.id)", "started_s_ago": "\(Int((ContinuousClock.now - call.started).seconds))"])
            let outcome = call.triage.outcome(
                for: call.job,
                result: .unanswered(
                    "no end of this call reached the daemon within \(Int((call.deadline - call.started).seconds)) s"),
                answer: .unanswered, started: call.started, finished: .now)
            stats.count(outcome)
            writes.submit(outcome)
            events.send(.callsFinished(1))
        }
    }

    /// One call's result, recorded (metrics, breaker, counters) and turned into the job's outcome.
    func finish(
        _ job: ValidJob, result: CallResult, started: ContinuousClock.Instant,
        finished: ContinuousClock.Instant, triage: Triage
    ) -> JobOutcome {
        let answer = result.answerClass
        metrics.call(answer, duration: max(.zero, finished - started))
        let outcome = triage.outcome(for: job, result: result, answer: answer, started: started, finished: finished)
        if outcome.possibleDuplicate {
            metrics.possibleDuplicates.increment()
            logger.warning(
                "sent after GenAuth's window to prove an earlier unanswered call: a second SMS is possible",
                metadata: ["job": "\(job.id)", "phone": "\(ValidatedPhone.masked(job.phone.number))"])
        }
        if let phase = breaker.record(isServerFault: answer.isServerFault) {
            metrics.breaker(phase)
            logger.log(
                level: phase == .open ? .error : .notice, "GenAuth circuit breaker \(phase.rawValue)",
                metadata: ["threshold": "\(breaker.configuration.threshold)", "times_opened": "\(breaker.timesOpened)"])
        }
        logger.debug(
            "job attempt",
            metadata: [
                "job": "\(job.id)", "phone": "\(ValidatedPhone.masked(job.phone.number))", "channel": "\(job.channel.rawValue)",
                "attempt": "\(job.attempts + 1)", "state": "\(outcome.state.rawValue)",
                "status_code": "\(outcome.call?.statusCode.map(String.init) ?? "-")",
                "http_status": "\(outcome.call?.httpStatus.map(String.init) ?? "-")",
            ])
        stats.count(outcome)
        return outcome
    }
}
