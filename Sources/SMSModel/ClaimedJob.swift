/// A job as the claim hands it to the dispatcher.
package struct ClaimedJob: Sendable, Equatable {
    package let lease: JobLease
    package var id: Int64 { lease.id }
    package let channel: String
    package let phoneNumber: String
    package let phoneCountryCode: String?
    /// Country code (+86 when none) and number: the phone's identity for throttling and caps.
    package let phoneKey: String
    /// API calls made before this claim.
    package let attempts: Int
    package let maxAttempts: Int
    /// Epoch seconds, by the database's clock (as is `now`).
    package let createdAt: Double
    package let expiresAt: Double?
    package let now: Double
    /// A newer job for the same phone and channel that is still to be sent, if any.
    package let newerJob: Int64?
    /// An earlier call may have gone out (its answer never came, or its worker died during it).
    package let uncertain: Bool
    /// While `uncertain`: when GenAuth stops being able to prove the earliest such call (epoch seconds,
    /// database clock; `sms.jobs.proof_until`). Nil when no call of the job went unanswered.
    package let proofUntil: Double?
    /// When the claim was sent, by this host's monotonic clock: with `now` (the database's clock as the
    /// claim ended), what maps an instant of this host to the database's clock (`databaseTime(of:)`),
    /// so no host clock is ever read. The estimate runs ahead of the database by at most the claim's
    /// round trip, never behind.
    package let claimedAt: ContinuousClock.Instant
    /// The database's clock as the claim's transaction began, and when its answer arrived by this
    /// host's clock: the other mapping (`earliestDatabaseTime(of:)`), which runs behind, never ahead.
    package let startedNow: Double
    package let answeredAt: ContinuousClock.Instant

    package init(
        id: Int64, leaseToken: Int64 = 0, channel: String, phoneNumber: String, phoneCountryCode: String?,
        phoneKey: String? = nil, attempts: Int, maxAttempts: Int, createdAt: Double = 0, expiresAt: Double? = nil,
        now: Double = 0, newerJob: Int64? = nil, uncertain: Bool = false, proofUntil: Double? = nil,
        claimedAt: ContinuousClock.Instant = .now, startedNow: Double? = nil,
        answeredAt: ContinuousClock.Instant? = nil
    ) {
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
        self.startedNow = startedNow ?? now
        self.answeredAt = answeredAt ?? claimedAt
    }

    /// Equal when everything the claim read is: `claimedAt` is this process's bookkeeping.
    package static func == (lhs: ClaimedJob, rhs: ClaimedJob) -> Bool {
        lhs.lease == rhs.lease && lhs.channel == rhs.channel && lhs.phoneNumber == rhs.phoneNumber
            && lhs.phoneCountryCode == rhs.phoneCountryCode && lhs.phoneKey == rhs.phoneKey && lhs.attempts == rhs.attempts
            && lhs.maxAttempts == rhs.maxAttempts && lhs.createdAt == rhs.createdAt && lhs.expiresAt == rhs.expiresAt
            && lhs.now == rhs.now && lhs.newerJob == rhs.newerJob && lhs.uncertain == rhs.uncertain
            && lhs.proofUntil == rhs.proofUntil
    }

    /// `instant` of this host's monotonic clock on the database's clock (epoch seconds), at the latest:
    /// for asking whether a moment is past a proof window's close.
    package func databaseTime(of instant: ContinuousClock.Instant) -> Double {
        now + (instant - claimedAt).seconds
    }

    /// `instant` on the database's clock at the earliest: for a call's start, from which its proof
    /// window is reckoned (never later than GenAuth's).
    package func earliestDatabaseTime(of instant: ContinuousClock.Instant) -> Double {
        startedNow + (instant - answeredAt).seconds
    }

    /// Where a call starting at `instant` stands with GenAuth's proof of the job's earliest call whose
    /// answer never came: classified here once, read by triage (presumed sent, superseded, a possible
    /// second SMS, the retry's delay) and admission (the breaker).
    package func proof(at instant: ContinuousClock.Instant) -> Proof {
        guard uncertain else { return .none }
        guard let proofUntil, databaseTime(of: instant) + ProofWindow.margin.seconds < proofUntil else { return .closed }
        return .open(closes: proofUntil)
    }

    /// When it must no longer be sent (epoch seconds, database clock): `expires_at`, or `created_at` +
    /// the channel's TTL (zero: none), whichever is first.
    package func deadline(ttl: Duration) -> Double? {
        let byTTL = ttl > .zero ? createdAt + ttl.seconds : nil
        switch (expiresAt, byTTL) {
        case (let expires?, let ttl?): return min(expires, ttl)
        case (let expires?, nil): return expires
        case (nil, let ttl?): return ttl
        case (nil, nil): return nil
        }
    }
}
