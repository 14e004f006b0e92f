import GenAuth
import Logging
import SMSModel

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
    let logger: Logger

    /// `triage`: the batch's (the live settings it was claimed under), so a reload during a call does
    /// not change what its answer means (retry delays, attempts).
    func start(_ jobs: [(job: ValidJob, slot: Duration)], deciding triage: Triage) {
        guard !jobs.isEmpty else { return }
        let now = ContinuousClock.now
        client.start(jobs.map { job, slot in
            let started = now + slot
            return GenAuthClient.PendingCall(request: SendSMSRequest(job), notBefore: slot > .zero ? started : nil) { result in
                let outcome = finish(job, result: result, started: started, finished: .now, triage: triage)
                writes.submit(outcome)
                events.send(.callsFinished(1))
            }
        })
    }

    /// One call's result, recorded (metrics, breaker, counters) and turned into the job's outcome.
    func finish(_ job: ValidJob, result: CallResult, started: ContinuousClock.Instant,
                finished: ContinuousClock.Instant, triage: Triage) -> JobOutcome {
        let answer = result.answerClass
        metrics.call(answer, duration: max(.zero, finished - started))
        let outcome = triage.outcome(for: job, result: result, answer: answer, started: started, finished: finished)
        if let phase = breaker.record(isServerFault: answer.isServerFault) {
            metrics.breaker(phase)
            logger.log(level: phase == .open ? .error : .notice, "GenAuth circuit breaker \(phase.rawValue)",
                       metadata: ["threshold": "\(breaker.configuration.threshold)", "times_opened": "\(breaker.timesOpened)"])
        }
        logger.debug("job attempt", metadata: [
            "job": "\(job.id)", "phone": "\(ValidatedPhone.masked(job.phone.number))", "channel": "\(job.channel.rawValue)",
            "attempt": "\(job.attempts + 1)", "state": "\(outcome.state.rawValue)",
            "status_code": "\(outcome.call?.statusCode.map(String.init) ?? "-")",
            "http_status": "\(outcome.call?.httpStatus.map(String.init) ?? "-")",
        ])
        stats.count(outcome)
        return outcome
    }
}
