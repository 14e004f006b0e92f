import Foundation
import GenAuth
import SMSModel

/// The second question triage answers: what one call's answer means for its job (sent, failed, a
/// retry, a deferral, presumed sent by GenAuth's window), under the delivery policy.
extension Triage {
    /// Turns one call's result (classified once, by the caller) into the job's next state.
    package func outcome(
        for job: ValidJob, result: CallResult, answer: AnswerClass, started: ContinuousClock.Instant,
        finished: ContinuousClock.Instant
    ) -> JobOutcome {
        var call = CallRecord(startedAt: started, finishedAt: finished)
        var retryAfter: Duration? = nil
        switch result {
        case .answered(let httpStatus, let body, let hint):
            call.httpStatus = httpStatus
            call.statusCode = body?.statusCode
            call.apiCode = body?.apiCode
            call.requestID = body?.requestId
            call.message = body?.message ?? (body == nil ? "HTTP \(httpStatus) without a GenAuth JSON body" : nil)
            retryAfter = hint
        case .unanswered(let reason), .notSent(let reason):
            call.message = reason
        }
        let attempt = job.attempts + 1
        let coalesce = job.rule.coalesce
        // Whether this call left while GenAuth could still prove the job's earlier unanswered call.
        let proof = job.claimed.proof(at: started)
        // An earlier call of this job may have gone out unseen (no answer, or its worker died). GenAuth
        // now says this phone already had an SMS on this channel within its window, and no other job of
        // ours can have sent it (the cluster-wide throttle held the slot for this job): that call went
        // through. Sending again would be a duplicate. Only GenAuth's phone-window answer proves it (HTTP
        // 2xx, body 429; its QPS limit is an HTTP 429 and proves nothing), and only inside the window.
        if proof.isOpen, answer == .phoneWindowHeld {
            return JobOutcome(
                job: job.lease, state: .sent,
                message:
                    "presumed sent: an earlier call whose answer never came went through (GenAuth: \(call.message ?? "429"))",
                call: call, coalesce: coalesce)
        }
        // Uncertain from now on if this call may have gone out unseen, or still from an earlier one.
        let uncertain = answer.mayHaveSent || job.uncertain
        // Until when GenAuth can prove this call, if it may have gone out unseen: from the earliest the
        // call can have started on the database's clock.
        let unseen =
            answer.mayHaveSent
            ? proofWindow.closes(afterCallAt: job.claimed.earliestDatabaseTime(of: started)) : nil
        if answer.mayHaveSent {
            if configuration.policy == .atMostOnce {
                return JobOutcome(
                    job: job.lease, state: .failed,
                    message:
                        "delivery unknown: \(call.message ?? "no answer"); not retried (delivery.policy = at-most-once); the SMS may have been delivered",
                    call: call, coalesce: coalesce, uncertain: true, unseenCallProvableUntil: unseen)
            }
            if attempt >= job.maxAttempts {
                return JobOutcome(
                    job: job.lease, state: .failed,
                    message:
                        "delivery unknown: attempts exhausted (\(attempt) of \(job.maxAttempts)) and GenAuth never answered the last (\(call.message ?? "no answer")); the SMS may have been delivered",
                    call: call, coalesce: coalesce, uncertain: true, unseenCallProvableUntil: unseen)
            }
        }
        switch answer.verdict {
        case .sent where proof == .closed:
            // Accepted after GenAuth's window to prove the earlier call had closed: if that call went out
            // too, the phone had two SMS for this job. The row says so.
            return JobOutcome(
                job: job.lease, state: .sent,
                message:
                    "sent; a second SMS is possible: an earlier call whose answer never came may have been delivered too, and this call came after GenAuth's \(Int(proofWindow.length.seconds)) s window to prove it",
                call: call, coalesce: coalesce, possibleDuplicate: true)
        case .sent:
            return JobOutcome(job: job.lease, state: .sent, message: call.message, call: call, coalesce: coalesce)
        case .permanentFailure:
            return JobOutcome(
                job: job.lease, state: .failed, message: call.message, call: call, coalesce: coalesce,
                uncertain: uncertain, unseenCallProvableUntil: unseen)
        case .transientFailure:
            if attempt >= job.maxAttempts {
                return JobOutcome(
                    job: job.lease, state: .failed,
                    message: "attempts exhausted (\(attempt) of \(job.maxAttempts)); last: \(call.message ?? "no message")",
                    call: call, coalesce: coalesce, uncertain: uncertain, unseenCallProvableUntil: unseen)
            }
            var delay = configuration.backoff.delay(afterAttempt: attempt, retryAfter: retryAfter)
            if uncertain {
                // The retry must reach GenAuth while it can still prove the earliest call that may have
                // gone out, so that its "too frequent" answer tells (and nothing goes out twice): halfway
                // to the window's close, leaving time for one more try. Past the close, the usual backoff.
                let closes: Double?
                switch proof {
                case .open(let at): closes = at
                case .none: closes = unseen
                case .closed: closes = nil
                }
                if let closes {
                    let left = Duration.seconds(double: closes - job.claimed.databaseTime(of: finished)) - ProofWindow.margin
                    if left > .zero { delay = min(delay, max(.milliseconds(200), left / 2)) }
                }
            }
            return JobOutcome(
                job: job.lease, state: .pending, message: call.message, call: call, retryIn: delay,
                coalesce: coalesce, uncertain: uncertain, unseenCallProvableUntil: unseen)
        }
    }
}
