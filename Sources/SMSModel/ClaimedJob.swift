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
    /// The previous call's outcome is unknown: its worker died during it.
    public let uncertain: Bool

    public init(id: Int64, leaseToken: Int64 = 0, channel: String, phoneNumber: String, phoneCountryCode: String?,
                phoneKey: String? = nil, attempts: Int, maxAttempts: Int, createdAt: Double = 0, expiresAt: Double? = nil,
                now: Double = 0, newerJob: Int64? = nil, uncertain: Bool = false) {
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
