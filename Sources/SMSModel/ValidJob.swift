/// A claimed job that passed triage: its channel parsed, its phone validated, its channel's rule
/// looked up and its attempts capped, once. Everything after triage (the throttle, the call, the
/// outcome) reads these values instead of checking the row's strings again.
package struct ValidJob: Sendable, Equatable {
    package let claimed: ClaimedJob
    package let channel: Channel
    package let phone: ValidatedPhone
    package let rule: ChannelRule
    /// The job's `max_attempts`, capped by its channel's rule.
    package let maxAttempts: Int

    package init(claimed: ClaimedJob, channel: Channel, phone: ValidatedPhone, rule: ChannelRule) {
        self.claimed = claimed
        self.channel = channel
        self.phone = phone
        self.rule = rule
        self.maxAttempts = rule.maxAttempts.map { min(claimed.maxAttempts, $0) } ?? claimed.maxAttempts
    }

    package var id: Int64 { claimed.id }
    package var lease: JobLease { claimed.lease }
    /// The phone's identity for the throttle and the caps (as the database computed it).
    package var phoneKey: String { claimed.phoneKey }
    /// API calls made before this claim.
    package var attempts: Int { claimed.attempts }
    package var uncertain: Bool { claimed.uncertain }
    /// See `ClaimedJob.proofUntil`.
    package var proofUntil: Double? { claimed.proofUntil }
    /// When it must no longer be sent (epoch seconds, database clock).
    package var deadline: Double? { claimed.deadline(ttl: rule.ttl) }
}
