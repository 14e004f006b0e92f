import Foundation
import GenAuth
import SMSModel

/// Decides what becomes of a job, without I/O. Here: whether a claimed job may be sent at all (and if
/// so checks and types it once, as a `ValidJob`), and what a deferral says; what one call's answer
/// means for the job is in `Triage+Answer.swift`. Pure: the claim loop and the call completions ask
/// it; tests ask it directly.
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
}
