import Foundation
import GenAuth
import SMSModel

/// Decides what becomes of a job, without I/O: whether a claimed job may be sent at all (and if so
/// checks and types it once, as a `ValidJob`), what a deferral says, and what one call's result means
/// for the job. Pure: the claim loop and the call completions ask it; tests ask it directly.
package struct Triage: Sendable {
    /// What configuration says about deciding (`channels.*`, `countries.*`, `retry.*`, `delivery.policy`).
    package struct Configuration: Sendable, Equatable {
        package var rules = SendingRules()
        package var policy = DeliveryPolicy.atLeastOnce
        package var backoff = Backoff()
        package init() {}
    }

    package let configuration: Configuration
    /// One SMS per phone per channel in this window (`throttle.window`): for messages, and so that the
    /// retry after an unanswered call comes while GenAuth's own window still holds.
    package let throttleWindow: Duration
    /// How long GenAuth can prove an earlier call went out (`throttle.window`, at most GenAuth's minute).
    package var proofWindow: ProofWindow { ProofWindow(throttleWindow: throttleWindow) }

    package init(configuration: Configuration, throttleWindow: Duration) {
        self.configuration = configuration
        self.throttleWindow = throttleWindow
    }

    /// A claimed job is either sendable (checked and typed) or settled here without a call.
    package enum Decision: Sendable, Equatable {
        case send(ValidJob)
        case settle(JobOutcome)
    }

    /// Jobs that must not be sent: expired, invalid, against a channel or country rule, superseded by
    /// a newer job for the same phone and channel, or out of attempts. None of these reaches GenAuth.
    package func decide(_ job: ClaimedJob) -> Decision {
        func settle(_ state: JobState, _ message: String) -> Decision {
            .settle(JobOutcome(job: job.lease, state: state, message: message))
        }
        let channel: Channel
        switch Channel.parse(job.channel) {
        case .failure(let error): return settle(.rejected, error.message)
        case .success(let valid): channel = valid
        }
        let rule = configuration.rules[channel]
        if let expiresAt = job.expiresAt, expiresAt <= job.now {
            return settle(.expired, "expires_at passed before the SMS could be sent")
        }
        if rule.ttl > .zero, job.createdAt + rule.ttl.seconds <= job.now {
            return settle(
                .expired,
                "older than \(channel.rawValue)'s TTL of \(Int(rule.ttl.seconds)) s (channels.\(channel.rawValue).ttl) before it could be sent"
            )
        }
        let phone: ValidatedPhone
        switch ValidatedPhone.validate(number: job.phoneNumber, countryCode: job.phoneCountryCode) {
        case .failure(let error): return settle(.rejected, error.message)
        case .success(let valid): phone = valid
        }
        if !rule.enabled {
            return settle(
                .rejected,
                "channel \(channel.rawValue) is disabled by configuration (channels.\(channel.rawValue).enabled = false)")
        }
        if let code = phone.countryCode {
            let rules = configuration.rules
            if !rules.international {
                return settle(
                    .rejected,
                    "international numbers are not enabled (countries.international = false); \(code) is outside mainland China")
            }
            if !rules.allowedCountryCodes.isEmpty && !rules.allowedCountryCodes.contains(code) {
                return settle(
                    .rejected,
                    "country code \(code) is not allowed (countries.allow = \(rules.allowedCountryCodes.joined(separator: ", ")))"
                )
            }
        }
        // A job whose earlier call may have gone out is not superseded while GenAuth can still prove that
        // call: its retry finds out (and sends nothing if it went out). Past that, superseded, its row
        // says the earlier call may have been delivered (the write-back adds it to every unsent end).
        if rule.coalesce, let newer = job.newerJob, !job.proof(at: job.claimedAt).isOpen {
            return settle(.superseded, "superseded by job \(newer), a newer request for the same phone and channel")
        }
        let valid = ValidJob(claimed: job, channel: channel, phone: phone, rule: rule)
        if job.attempts >= valid.maxAttempts {
            return settle(.failed, "attempts exhausted (\(job.attempts) of \(valid.maxAttempts)) before this claim")
        }
        return .send(valid)
    }

    /// Back to pending until `until` (epoch, database clock), no attempt used; or `expired` if the job's
    /// deadline comes first. `reason` says why, for the message (default: the phone's window).
    package func deferral(_ job: ValidJob, until: Double, reason: String? = nil) -> JobOutcome {
        let when = Date(timeIntervalSince1970: until).formatted(.iso8601)
        let reason = reason ?? "one SMS per phone per channel every \(Int(throttleWindow.seconds)) s (throttle.window)"
        if let deadline = job.deadline, until >= deadline {
            return JobOutcome(
                job: job.lease, state: .expired,
                message:
                    "deferred until \(when) (\(reason)), which is after its deadline \(Date(timeIntervalSince1970: deadline).formatted(.iso8601))"
            )
        }
        return JobOutcome(
            job: job.lease, state: .pending, message: "deferred: \(reason); next try at \(when)",
            deferredUntil: until)
    }

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
