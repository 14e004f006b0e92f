/// A job as the claim hands it to the dispatcher.
public struct ClaimedJob: Sendable, Equatable {
    public let lease: JobLease
    public var id: Int64 { lease.id }
    public let channel: String
    public let phoneNumber: String
    public let phoneCountryCode: String?
    /// Country code (+86 when none) and number: the phone's identity for throttling and caps.
    public let phoneKey: String
    /// API calls made before this claim.
    public let attempts: Int
    public let maxAttempts: Int
    /// Epoch seconds, by the database's clock (as is `now`).
    public let createdAt: Double
    public let expiresAt: Double?
    public let now: Double
    /// A newer job for the same phone and channel that is still to be sent, if any.
    public let newerJob: Int64?
    /// An earlier call may have gone out (its answer never came, or its worker died during it).
    public let uncertain: Bool
    /// While `uncertain`: when GenAuth stops being able to prove the earliest such call (epoch seconds,
    /// database clock; `sms.jobs.proof_until`). Nil when no call of the job went unanswered.
    public let proofUntil: Double?
    /// When the claim answered, by this host's monotonic clock: with `now`, what maps an instant of this
    /// host to the database's clock (`databaseTime(of:)`), so no host clock is ever read.
    public let claimedAt: ContinuousClock.Instant

    public init(id: Int64, leaseToken: Int64 = 0, channel: String, phoneNumber: String, phoneCountryCode: String?,
                phoneKey: String? = nil, attempts: Int, maxAttempts: Int, createdAt: Double = 0, expiresAt: Double? = nil,
                now: Double = 0, newerJob: Int64? = nil, uncertain: Bool = false, proofUntil: Double? = nil,
                claimedAt: ContinuousClock.Instant = .now) {
        self.lease = JobLease(id: id, token: leaseToken)
        self.channel = channel
        self.phoneNumber = phoneNumber
        self.phoneCountryCode = phoneCountryCode
        self.phoneKey = phoneKey ?? ((phoneCountryCode ?? "+86") + " " + phoneNumber)
        self.attempts = attempts
        self.maxAttempts = maxAttempts
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.now = now
        self.newerJob = newerJob
        self.uncertain = uncertain
        self.proofUntil = proofUntil
        self.claimedAt = claimedAt
    }

    /// Equal when everything the claim read is: `claimedAt` is this process's bookkeeping.
    public static func == (lhs: ClaimedJob, rhs: ClaimedJob) -> Bool {
        lhs.lease == rhs.lease && lhs.channel == rhs.channel && lhs.phoneNumber == rhs.phoneNumber
            && lhs.phoneCountryCode == rhs.phoneCountryCode && lhs.phoneKey == rhs.phoneKey && lhs.attempts == rhs.attempts
            && lhs.maxAttempts == rhs.maxAttempts && lhs.createdAt == rhs.createdAt && lhs.expiresAt == rhs.expiresAt
            && lhs.now == rhs.now && lhs.newerJob == rhs.newerJob && lhs.uncertain == rhs.uncertain
            && lhs.proofUntil == rhs.proofUntil
    }

    /// `instant` of this host's monotonic clock on the database's clock (epoch seconds).
    public func databaseTime(of instant: ContinuousClock.Instant) -> Double {
        now + (instant - claimedAt).seconds
    }

    /// Whether a call starting at `instant` still reaches GenAuth while it can prove the job's earliest
    /// call whose answer never came (with `ProofWindow.margin` to spare). True for a job with no such call.
    public func proofOpen(at instant: ContinuousClock.Instant) -> Bool {
        guard uncertain else { return true }
        guard let proofUntil else { return false }
        return databaseTime(of: instant) + ProofWindow.margin.seconds < proofUntil
    }

    /// When it must no longer be sent (epoch seconds, database clock): `expires_at`, or `created_at` +
    /// the channel's TTL (zero: none), whichever is first.
    public func deadline(ttl: Duration) -> Double? {
        let byTTL = ttl > .zero ? createdAt + ttl.seconds : nil
        switch (expiresAt, byTTL) {
        case let (expires?, ttl?): return min(expires, ttl)
        case let (expires?, nil): return expires
        case let (nil, ttl?): return ttl
        case (nil, nil): return nil
        }
    }
}
