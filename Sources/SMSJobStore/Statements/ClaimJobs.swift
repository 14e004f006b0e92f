import PostgresClient
import SMSModel

/// Claims up to `limit` due pending jobs for `worker` (`sms.claim_jobs`: River's CTE form, so the LIMIT
/// applies to rows actually locked, with a plan that survives stale statistics). Each claim hands out a
/// new claim token. Retries of calls that may have gone out come first (see `ProofWindow`).
public struct ClaimJobs: Statement {
    public var worker: String
    public var limit: Int
    public var lease: Duration

    public init(worker: String, limit: Int, lease: Duration) {
        self.worker = worker
        self.limit = limit
        self.lease = lease
    }

    public static let sql = """
        SELECT id, lease_token, channel, phone_number, phone_country_code, phone_key, attempts, max_attempts,
               created_epoch, expires_epoch, now_epoch, newer_job, uncertain, proof_epoch
        FROM sms.claim_jobs($1, $2::int, $3::float8)
        """

    public var bindings: [String?] { [worker, String(limit), String(lease.seconds)] }

    public func decode(_ rows: PostgresRows) throws -> [ClaimedJob] {
        // Read as the answer arrives: with now_epoch, what maps this host's monotonic clock to the database's.
        let claimedAt = ContinuousClock.now
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
                claimedAt: claimedAt)
        }
    }
}
