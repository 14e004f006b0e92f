import PostgresClient
import SMSModel

/// Claims up to `limit` due pending jobs for `worker` (`sms.claim_jobs`: River's CTE form, so the LIMIT
/// applies to rows actually locked, with a plan that survives stale statistics). Each claim hands out a
/// new claim token. Retries of calls that may have gone out come first (see `ProofWindow`).
package struct ClaimJobs: Statement {
    package var worker: String
    package var limit: Int
    package var lease: Duration
    /// When the claim was sent, by this host's monotonic clock (the value is made just before it is
    /// sent). With `now_epoch`, the database's clock as the claim ended, it maps this host's instants
    /// onto the database's clock, ahead rather than behind (`ClaimedJob.databaseTime(of:)`): a proof
    /// window's close is then never taken for later than it is.
    package var sentAt: ContinuousClock.Instant

    package init(worker: String, limit: Int, lease: Duration, sentAt: ContinuousClock.Instant = .now) {
        self.worker = worker
        self.limit = limit
        self.lease = lease
        self.sentAt = sentAt
    }

    package static let sql = """
        SELECT id, lease_token, channel, phone_number, phone_country_code, phone_key, attempts, max_attempts,
               created_epoch, expires_epoch, now_epoch, started_epoch, newer_job, uncertain, proof_epoch
        FROM sms.claim_jobs($1, $2::int, $3::float8)
        """

    package var bindings: [String?] { [worker, String(limit), String(lease.seconds)] }

    package func decode(_ rows: PostgresRows) throws -> [ClaimedJob] {
        let answeredAt = ContinuousClock.now
        return try rows.rows.map { row in
            ClaimedJob(
                id: Int64(try row.requiredInt("id")),
                leaseToken: Int64(try row.requiredInt("lease_token")),
                channel: try row.requiredString("channel"),
                phoneNumber: try row.requiredString("phone_number"),
                phoneCountryCode: try row.string("phone_country_code"),
                phoneKey: try row.requiredString("phone_key"),
                attempts: try row.requiredInt("attempts"),
                maxAttempts: try row.requiredInt("max_attempts"),
                createdAt: try row.double("created_epoch") ?? 0,
                expiresAt: try row.double("expires_epoch"),
                now: try row.double("now_epoch") ?? 0,
                newerJob: try row.int("newer_job").map(Int64.init),
                uncertain: try row.bool("uncertain") ?? false,
                proofUntil: try row.double("proof_epoch"),
                claimedAt: sentAt,
                startedNow: try row.double("started_epoch"),
                answeredAt: answeredAt)
        }
    }
}
