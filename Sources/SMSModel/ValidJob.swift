/// A claimed job that passed triage: its channel parsed, its phone validated, its channel's rule
/// looked up and its attempts capped, once. Everything after triage (the throttle, the call, the
/// outcome) reads these values instead of checking the row's strings again.
public struct ValidJob: Sendable, Equatable {
    public let claimed: ClaimedJob
    public let channel: Channel
    public let phone: ValidatedPhone
    public let rule: ChannelRule
    /// The job's `max_attempts`, capped by its channel's rule.
    public let maxAttempts: Int

    public init(claimed: ClaimedJob, channel: Channel, phone: ValidatedPhone, rule: ChannelRule) {
        self.claimed = claimed
        self.channel = channel
        self.phone = phone
        self.rule = rule
        self.maxAttempts = rule.maxAttempts.map { min(claimed.maxAttempts, $0) } ?? claimed.maxAttempts
    }

    public var id: Int64 { claimed.id }
    public var lease: JobLease { claimed.lease }
    /// The phone's identity for the throttle and the caps (as the database computed it).
    public var phoneKey: String { claimed.phoneKey }
    /// API calls made before this claim.
    public var attempts: Int { claimed.attempts }
    public var uncertain: Bool { claimed.uncertain }
    /// See `ClaimedJob.proofUntil`.
    public var proofUntil: Double? { claimed.proofUntil }
    /// When it must no longer be sent (epoch seconds, database clock).
    public var deadline: Double? { claimed.deadline(ttl: rule.ttl) }
}
