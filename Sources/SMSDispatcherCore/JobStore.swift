import Foundation
import PostgresClient

/// A job under one claim: its id and the claim token that claim gave it (`sms.claim_jobs`). Every
/// statement that acts for the holder (lease extension, reservation, write-back) names both, so a
/// job this process no longer holds under this claim cannot be touched by it.
public struct JobLease: Sendable, Hashable {
    public let id: Int64
    public let token: Int64

    public init(id: Int64, token: Int64) {
        self.id = id
        self.token = token
    }
}

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
    public var maxAttempts: Int
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

    /// When it must no longer be sent: `expires_at`, or `created_at` + the channel's TTL, whichever is first.
    public func deadline(ttl: Double) -> Double? {
        let byTTL = ttl > 0 ? createdAt + ttl : nil
        switch (expiresAt, byTTL) {
        case let (expires?, ttl?): return min(expires, ttl)
        case let (expires?, nil): return expires
        case let (nil, ttl?): return ttl
        case (nil, nil): return nil
        }
    }
}

/// The cluster-wide throttle's answer for one job (`sms.reserve_sends`).
public enum Reservation: Sendable, Equatable {
    /// Send it, starting `slot` from now (by the cluster's rate schedule; zero without a rate limit).
    case granted(slot: Duration)
    /// The phone+channel window is open until this epoch second.
    case deferred(until: Double)
    /// A per-phone cap was reached; the text names it.
    case capped(String)
    /// The job is no longer running under this claim (its lease ran out and it was rescued, maybe
    /// claimed by another worker): it must not be sent, and its outcome is not ours to write.
    case lost
}

/// One API call, as recorded on the job and in `sms.attempts`.
public struct CallRecord: Sendable, Equatable {
    public var httpStatus: Int?
    public var statusCode: Int?
    public var apiCode: Int?
    public var message: String?
    public var requestID: String?
    /// By this host's monotonic clock: the write-back turns them into database times ("so long ago"),
    /// so a host clock off by minutes changes no time on a row.
    public var startedAt: ContinuousClock.Instant
    public var finishedAt: ContinuousClock.Instant

    public init(httpStatus: Int? = nil, statusCode: Int? = nil, apiCode: Int? = nil, message: String? = nil,
                requestID: String? = nil, startedAt: ContinuousClock.Instant, finishedAt: ContinuousClock.Instant) {
        self.httpStatus = httpStatus
        self.statusCode = statusCode
        self.apiCode = apiCode
        self.message = message
        self.requestID = requestID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}

/// What becomes of a claimed job: the write-back for one row.
public struct JobOutcome: Sendable, Equatable {
    /// The job and the claim this outcome belongs to: the write-back is fenced on both.
    public var job: JobLease
    public var jobID: Int64 { job.id }
    /// `sent`, `failed`, `rejected`, `expired`, or `pending` for a scheduled retry.
    public var state: JobState
    /// The row's `message`: GenAuth's, or the daemon's reason when it decided itself.
    public var message: String?
    /// The call made under this claim, if any.
    public var call: CallRecord?
    /// Seconds until the retry, for `pending`.
    public var retryIn: Double?
    /// For a deferral: the epoch second (database clock) to try again; counts in `deferrals`.
    public var deferredUntil: Double?
    /// When sent: supersede older pending jobs for the same phone and channel.
    public var coalesce: Bool
    /// Some call of this job may have reached GenAuth without our learning its answer (the request was
    /// written, no answer came): its phone+channel window stays held, and a retry that GenAuth calls
    /// "too frequent" proves that call went out.
    public var uncertain: Bool

    public init(job: JobLease, state: JobState, message: String?, call: CallRecord? = nil, retryIn: Double? = nil,
                deferredUntil: Double? = nil, coalesce: Bool = false, uncertain: Bool = false) {
        self.job = job
        self.state = state
        self.message = message
        self.call = call
        self.retryIn = retryIn
        self.deferredUntil = deferredUntil
        self.coalesce = coalesce
        self.uncertain = uncertain
    }

    /// This outcome without anything GenAuth sent, for a row the database refused to store it on (a
    /// data error: a value out of a column's range). What happened stays true: a sent SMS stays
    /// `sent`; anything else ends `failed`, both with the database's reason.
    public func storable(after error: String) -> JobOutcome {
        var stripped = self
        if var call = stripped.call {
            call = CallRecord(httpStatus: nil, statusCode: nil, apiCode: nil, message: nil, requestID: nil,
                              startedAt: call.startedAt, finishedAt: call.finishedAt)
            stripped.call = call
        }
        stripped.deferredUntil = nil
        stripped.retryIn = nil
        if state == .sent {
            stripped.message = "sent (GenAuth accepted it), but its answer could not be stored: \(error)"
        } else {
            stripped.state = .failed
            stripped.message = "the outcome could not be stored (\(error)); was: \(state.rawValue): \(message ?? "")"
        }
        return stripped
    }
}

/// The worker row's counters (cumulative since start).
public struct WorkerCounters: Sendable, Equatable {
    public var claimed = 0
    public var sent = 0
    public var failed = 0
    public var retried = 0
    public var rejected = 0
    public var expired = 0
    public var deferred = 0
    public var superseded = 0
    public init() {}

    mutating func count(_ outcome: JobOutcome) {
        switch outcome.state {
        case .sent: sent += 1
        case .failed: failed += 1
        case .pending where outcome.deferredUntil != nil: deferred += 1
        case .pending: retried += 1
        case .superseded: superseded += 1
        case .rejected: rejected += 1
        case .expired: expired += 1
        default: break
        }
    }
}

public struct WorkerIdentity: Sendable {
    /// The configured `worker.id`, or `<host>-<pid>-<random>`: what `locked_by` and `sms.workers` show.
    public let id: String
    /// Random per process, whatever the id: two processes started with one `worker.id` (or one
    /// restarted under it) are still two workers.
    public let instance: String
    public let host: String
    public let pid: Int32

    public init(id: String, instance: String = WorkerIdentity.randomInstance(), host: String, pid: Int32) {
        self.id = id
        self.instance = instance
        self.host = host
        self.pid = pid
    }

    public static func make(configured: String?) -> WorkerIdentity {
        let host = ProcessInfo.processInfo.hostName
        let pid = ProcessInfo.processInfo.processIdentifier
        let instance = randomInstance()
        return WorkerIdentity(id: configured ?? "\(host)-\(pid)-\(instance.prefix(8))", instance: instance, host: host, pid: pid)
    }

    public static func randomInstance() -> String {
        let value = UInt64.random(in: 0...UInt64.max)
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// Every SQL statement that touches jobs, in one place. Stateless: each call takes the connection to
/// use, so the dispatcher decides which connection (and thread) a statement runs on.
public enum JobStore {
    /// Claims up to `limit` due pending jobs for `worker` (`sms.claim_jobs`: River's CTE form, so the
    /// LIMIT applies to rows actually locked, with a plan that survives stale statistics). Each claim
    /// hands out a new claim token.
    public static let claimSQL = """
        SELECT id, lease_token, channel, phone_number, phone_country_code, phone_key, attempts, max_attempts,
               created_epoch, expires_epoch, now_epoch, newer_job, uncertain
        FROM sms.claim_jobs($1, $2::int, $3::float8)
        """

    public static func claim(_ db: PostgresConnection, worker: String, limit: Int, lease: Double) async throws
        -> [ClaimedJob]
    {
        let rows = try await db.query(claimSQL, [worker, String(limit), String(lease)], prepared: true)
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
                uncertain: try row.bool("uncertain") ?? false)
        }
    }

    /// Writes a batch of outcomes in one round trip (`unnest` over arrays), fenced on the claim token: a
    /// row is only changed while it is still `running` under the claim the outcome belongs to, so
    /// neither a worker that lost its lease nor a stale outcome of an earlier claim can overwrite the
    /// truth. One exception, for the truth's sake: a call's outcome may still land on a row rescued
    /// from this very claim (same token, not claimed since, marked uncertain by the rescue), as when
    /// the database was away longer than a lease: the rescue could only guess, the holder knows.
    /// Times are sent as "seconds ago" by this host's monotonic clock and become `now() - ago`, so
    /// only the database's clock is ever written. Each call also gets its `sms.attempts` row.
    public static let completeSQL = """
        WITH r AS (
            SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::int[], $6::int[], $7::int[],
                                 $8::int[], $9::text[], $10::text[], $11::float8[], $12::float8[],
                                 $13::float8[], $14::text[], $15::text[], $16::float8[], $17::int[], $18::int[])
                AS r(id, token, state, called, http_status, status_code, api_code, message, request_id,
                     retry_in, started_ago, finished_ago, outcome, call_message, deferred_until, coalesce,
                     uncertain)
        ), done AS (
            UPDATE sms.jobs j SET
                state = r.state,
                -- A rescued row already counts the call the rescue could not see the end of.
                attempts = j.attempts + CASE WHEN j.state = 'running' THEN r.called ELSE 0 END,
                http_status = CASE WHEN r.called = 1 THEN r.http_status ELSE j.http_status END,
                status_code = CASE WHEN r.called = 1 THEN r.status_code ELSE j.status_code END,
                api_code = CASE WHEN r.called = 1 THEN r.api_code ELSE j.api_code END,
                request_id = CASE WHEN r.called = 1 THEN r.request_id ELSE j.request_id END,
                message = r.message,
                run_at = CASE WHEN r.deferred_until IS NOT NULL THEN to_timestamp(r.deferred_until)
                              WHEN r.state = 'pending' THEN now() + make_interval(secs => r.retry_in)
                              ELSE j.run_at END,
                deferrals = j.deferrals + CASE WHEN r.deferred_until IS NOT NULL THEN 1 ELSE 0 END,
                sent_at = CASE WHEN r.state = 'sent' THEN now() - make_interval(secs => r.finished_ago) ELSE j.sent_at END,
                finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE now() END,
                locked_by = NULL,
                locked_until = NULL,
                sending_at = NULL,
                -- Written by its holder: this claim is over, so a retried write (its reply lost) cannot
                -- apply twice through the rescued-row path below. Only a rescue keeps the token.
                lease_token = NULL,
                uncertain = CASE WHEN r.called = 1 THEN r.uncertain = 1 ELSE j.uncertain END,
                updated_at = now()
            FROM r
            -- Found by primary key, whatever the statistics say: the state tests are spelt so that no
            -- partial index matches them (a burst of jobs right after ANALYZE once made the planner
            -- scan every open job instead).
            WHERE j.id = r.id AND j.lease_token = r.token
              AND (j.state IS NOT DISTINCT FROM 'running'
                   OR (r.called = 1 AND j.locked_by IS NULL AND j.uncertain
                       AND j.state IN ('pending', 'failed')))
            RETURNING j.id, j.attempts, j.phone_key, j.channel
        ), logged AS (
            INSERT INTO sms.attempts (job_id, attempt, worker, started_at, finished_at, outcome,
                                      http_status, status_code, api_code, message, request_id)
            SELECT r.id, done.attempts, $1, now() - make_interval(secs => r.started_ago),
                   now() - make_interval(secs => r.finished_ago), r.outcome,
                   r.http_status, r.status_code, r.api_code, r.call_message, r.request_id
            FROM r JOIN done ON done.id = r.id
            WHERE r.called = 1
            RETURNING 1
        ), windows AS (
            -- The window runs from the end of the call that sent (or may have sent), so it never closes
            -- before GenAuth's.
            UPDATE sms.throttle t SET window_until = now() - make_interval(secs => r.finished_ago)
                                                     + make_interval(secs => $19::float8)
            FROM r JOIN done ON done.id = r.id
            WHERE t.job_id = r.id AND (r.state = 'sent' OR (r.called = 1 AND r.uncertain = 1))
            RETURNING 1
        ), released AS (
            -- A call certain not to have sent frees its phone+channel slot for the retry.
            DELETE FROM sms.throttle t
            USING r JOIN done ON done.id = r.id
            WHERE t.job_id = r.id AND r.called = 1 AND r.state <> 'sent' AND r.uncertain = 0
            RETURNING 1
        ), superseded AS (
            -- Driven from the few sent rows, one index probe each for older pending jobs of the same
            -- phone and channel, whatever the statistics say. OFFSET 0 keeps the LATERAL probe a
            -- per-row lookup: without it the planner flattened it and, on statistics taken before a
            -- burst, joined every open job with every other (84 s for one 64-job batch with 30,000
            -- jobs pending). The probe's state test is spelt so that only the (phone, channel) index
            -- matches it (`state = 'pending'` would let the planner walk the whole claim index for
            -- each row, as it did with a million finished rows); o's matches no partial index at all,
            -- so o is reached by its key.
            UPDATE sms.jobs o SET state = 'superseded', finished_at = now(), updated_at = now(),
                message = 'superseded by job ' || older.sent_by || ', sent to the same phone and channel'
            FROM (
                SELECT x.id, done.id AS sent_by
                FROM r JOIN done ON done.id = r.id,
                LATERAL (SELECT x.id FROM sms.jobs x
                         WHERE x.phone_key = done.phone_key AND x.channel = done.channel
                           AND x.state IN ('pending', 'running') AND x.state IS NOT DISTINCT FROM 'pending'
                           AND x.id < done.id
                         OFFSET 0) x
                WHERE r.state = 'sent' AND r.coalesce = 1
            ) older
            WHERE o.id = older.id AND o.state IS NOT DISTINCT FROM 'pending'
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM done) AS updated, (SELECT count(*) FROM logged) AS logged,
               (SELECT count(*) FROM superseded) AS superseded
        """

    /// Returns how many rows the fence let through (the rest were no longer under their claim).
    @discardableResult
    public static func complete(_ db: PostgresConnection, worker: String, outcomes: [JobOutcome],
                                throttleWindow: Int) async throws -> Int {
        guard !outcomes.isEmpty else { return 0 }
        let calls = outcomes.map(\.call)
        let now = ContinuousClock.now
        let parameters: [String?] = [
            worker,
            PostgresArray.literal(outcomes.map { Int($0.job.id) }),
            PostgresArray.literal(outcomes.map { Int($0.job.token) }),
            PostgresArray.literal(outcomes.map { Optional($0.state.rawValue) }),
            PostgresArray.literal(calls.map { $0 == nil ? 0 : 1 }),
            PostgresArray.literal(calls.map { $0?.httpStatus }),
            PostgresArray.literal(calls.map { $0?.statusCode }),
            PostgresArray.literal(calls.map { $0?.apiCode }),
            PostgresArray.literal(outcomes.map(\.message)),
            PostgresArray.literal(calls.map { $0?.requestID }),
            PostgresArray.literal(outcomes.map { $0.retryIn ?? 0 }.map { Optional($0) }),
            PostgresArray.literal(calls.map { $0.map { max(0, ($0.startedAt.duration(to: now)).seconds) } }),
            PostgresArray.literal(calls.map { $0.map { max(0, ($0.finishedAt.duration(to: now)).seconds) } }),
            PostgresArray.literal(outcomes.map { outcome -> String? in
                guard outcome.call != nil else { return nil }
                switch outcome.state {
                case .sent: return "sent"
                case .pending: return "retry"
                default: return "failed"
                }
            }),
            PostgresArray.literal(calls.map { $0?.message }),
            PostgresArray.literal(outcomes.map(\.deferredUntil)),
            PostgresArray.literal(outcomes.map { $0.coalesce ? 1 : 0 }),
            PostgresArray.literal(outcomes.map { $0.uncertain ? 1 : 0 }),
            String(throttleWindow),
        ]
        let rows = try await db.query(completeSQL, parameters, prepared: true)
        return try rows.first?.int("updated") ?? 0
    }

    public static let reserveSQL = """
        SELECT r_job_id, r_verdict, extract(epoch FROM r_until)::float8 AS until, r_detail, r_slot
        FROM sms.reserve_sends($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::float8, $6::int, $7::int,
                               $8::float8)
        """

    /// Asks the cluster-wide throttle (`sms.reserve_sends`) for each job's phone+channel slot, the
    /// per-phone caps and, with `rate` > 0, a slot in the cluster's rate schedule. Only jobs still
    /// running under their claim are granted anything.
    public static func reserve(_ db: PostgresConnection, jobs: [ClaimedJob], window: Int, hourCap: Int, dayCap: Int,
                               rate: Double = 0) async throws -> [Int64: Reservation]
    {
        guard !jobs.isEmpty else { return [:] }
        let rows = try await db.query(reserveSQL,
            [PostgresArray.literal(jobs.map { Int($0.id) }), PostgresArray.literal(jobs.map { Int($0.lease.token) }),
             PostgresArray.literal(jobs.map { Optional($0.phoneKey) }),
             PostgresArray.literal(jobs.map { Optional($0.channel) }), String(window), String(hourCap), String(dayCap),
             String(max(0, rate))],
            prepared: true)
        var verdicts: [Int64: Reservation] = [:]
        for row in rows.rows {
            let id = Int64(try row.requiredInt("r_job_id"))
            switch try row.requiredString("r_verdict") {
            case "granted":
                let slot = try row.double("r_slot") ?? 0
                verdicts[id] = .granted(slot: .milliseconds(Int64((min(max(0, slot), 3600) * 1000).rounded())))
            case "deferred": verdicts[id] = .deferred(until: try row.double("until") ?? 0)
            case "lost": verdicts[id] = .lost
            default: verdicts[id] = .capped(try row.string("r_detail") ?? "per-phone cap reached")
            }
        }
        return verdicts
    }

    /// Publishes the channels' configured default priorities for the insert trigger.
    public static func publishChannelSettings(_ db: PostgresConnection, rules: [Channel: ChannelRule]) async throws {
        let channels = Channel.allCases
        try await db.query("""
            INSERT INTO sms.channel_settings (channel, default_priority)
            SELECT * FROM unnest($1::text[], $2::smallint[])
            ON CONFLICT (channel) DO UPDATE SET default_priority = EXCLUDED.default_priority, updated_at = now()
            """,
            [PostgresArray.literal(channels.map { Optional($0.rawValue) }),
             PostgresArray.literal(channels.map { rules[$0]?.priority ?? 0 })])
    }

    /// What one heartbeat learnt.
    public struct Heartbeat: Sendable, Equatable {
        /// Daemons alive (heartbeat within `staleAfter`), this one included.
        public var live: Int
        /// Other live processes using this worker id.
        public var sharingID: Int
        /// Leases extended.
        public var extended: Int
    }

    /// The heartbeat: refreshes this process's worker row and extends the leases of exactly the jobs it
    /// holds (`held`: ids with their claim tokens, from memory). A job this process never claimed, or
    /// claimed under an earlier token, keeps running out its lease, so a process restarted under the
    /// same worker id cannot keep its predecessor's jobs from being rescued.
    @discardableResult
    public static func heartbeat(_ db: PostgresConnection, worker: WorkerIdentity, version: String, inFlight: Int,
                                 counters: WorkerCounters, held: [JobLease], unwritten: Int = 0,
                                 oldestUnwritten: Double? = nil, lease: Double, staleAfter: Double = 15)
        async throws -> Heartbeat
    {
        try await db.query("""
            INSERT INTO sms.workers (id, instance, host, pid, version, in_flight, claimed, sent, failed, retried,
                                     rejected, expired, deferred, superseded, unwritten, oldest_unwritten_s)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            ON CONFLICT (id, instance) DO UPDATE SET
                heartbeat_at = now(), in_flight = EXCLUDED.in_flight, claimed = EXCLUDED.claimed,
                sent = EXCLUDED.sent, failed = EXCLUDED.failed, retried = EXCLUDED.retried,
                rejected = EXCLUDED.rejected, expired = EXCLUDED.expired, deferred = EXCLUDED.deferred,
                superseded = EXCLUDED.superseded, unwritten = EXCLUDED.unwritten,
                oldest_unwritten_s = EXCLUDED.oldest_unwritten_s, stopped_at = NULL
            """,
            [worker.id, worker.instance, worker.host, String(worker.pid), version, String(inFlight),
             String(counters.claimed), String(counters.sent), String(counters.failed), String(counters.retried),
             String(counters.rejected), String(counters.expired), String(counters.deferred),
             String(counters.superseded), String(unwritten), oldestUnwritten.map { String($0) }],
            prepared: true)
        var extended = 0
        if !held.isEmpty {
            extended = try await db.query("""
                WITH mine AS (
                    -- SKIP LOCKED: a row the write-back is finishing right now needs no longer lease, and
                    -- waiting for it (while the write-back waits for a row locked here) would deadlock.
                    SELECT j.id FROM unnest($1::bigint[], $2::bigint[]) AS h(id, token)
                    JOIN sms.jobs j ON j.id = h.id AND j.lease_token = h.token AND j.state IS NOT DISTINCT FROM 'running'
                    FOR UPDATE OF j SKIP LOCKED
                )
                UPDATE sms.jobs j SET locked_until = now() + make_interval(secs => $3::float8)
                FROM mine WHERE j.id = mine.id
                """, [PostgresArray.literal(held.map { Int($0.id) }), PostgresArray.literal(held.map { Int($0.token) }),
                      String(lease)], prepared: true).affectedRows
        }
        let live = try await db.query("""
            SELECT count(*)::int AS n, count(*) FILTER (WHERE id = $2 AND instance <> $3)::int AS sharing
            FROM sms.workers
            WHERE heartbeat_at > now() - make_interval(secs => $1::float8) AND stopped_at IS NULL
            """, [String(staleAfter), worker.id, worker.instance], prepared: true)
        return Heartbeat(live: max(1, try live.first?.int("n") ?? 1), sharingID: try live.first?.int("sharing") ?? 0,
                         extended: extended)
    }

    /// Returns jobs whose lease ran out (their worker died or hung) to the queue, by the delivery
    /// policy (`sms.rescue_expired_leases`). Any daemon may run this; the row lock makes each rescue
    /// happen once.
    @discardableResult
    public static func rescueExpiredLeases(_ db: PostgresConnection, policy: DeliveryPolicy) async throws
        -> [(id: Int64, state: JobState)]
    {
        let rows = try await db.query("SELECT r_job_id, r_state FROM sms.rescue_expired_leases($1)",
                                      [policy.rawValue], prepared: true)
        return try rows.rows.map { row in
            let state = try row.requiredString("r_state")
            guard let known = JobState(rawValue: state) else {
                throw PostgresError(code: .badValue, message: "rescue returned an unknown state \(state)")
            }
            return (Int64(try row.requiredInt("r_job_id")), known)
        }
    }

    /// What one retention run did.
    public struct RetentionRun: Sendable, Equatable {
        public var deleted: Int
        /// The time budget ran out with more left to delete: run again soon.
        public var more: Bool
    }

    /// Retention: deletes finished jobs older than `days` (their attempts cascade), `batch` rows per
    /// statement, for at most `budget` per run, and only while holding the cluster-wide retention lock,
    /// so one daemon at a time does it. Also forgets throttle windows closed for a day and worker rows
    /// silent for a day. Returns nil when another daemon held the lock.
    public static func applyRetention(_ db: PostgresConnection, days: Int, batch: Int, budget: Duration)
        async throws -> RetentionRun?
    {
        let lockKey = String(Migrator.advisoryLockKey + 1)
        guard try await db.query("SELECT pg_try_advisory_lock($1) AS locked", [lockKey]).first?.bool("locked") == true else {
            return nil
        }
        do {
            let deadline = ContinuousClock.now + budget
            var run = RetentionRun(deleted: 0, more: false)
            while true {
                let deleted = try await purge(db, olderThanSeconds: Double(days) * 86_400, batch: batch, maximumBatches: 1)
                run.deleted += deleted
                if deleted < batch { break }
                if ContinuousClock.now >= deadline {
                    run.more = true
                    break
                }
            }
            try await db.query("DELETE FROM sms.throttle WHERE window_until < now() - interval '1 day'")
            try await db.query("DELETE FROM sms.workers WHERE heartbeat_at < now() - interval '1 day'")
            _ = try await db.query("SELECT pg_advisory_unlock($1)", [lockKey])
            return run
        } catch {
            _ = try? await db.query("SELECT pg_advisory_unlock($1)", [lockKey])
            throw error
        }
    }

    /// Deletes finished jobs older than `seconds` (their attempts cascade), `batch` rows per statement,
    /// oldest first, at most `maximumBatches` statements: operator `purge --older-than`, and retention.
    public static func purge(_ db: PostgresConnection, olderThanSeconds seconds: Double, batch: Int,
                             maximumBatches: Int = .max) async throws -> Int {
        var deleted = 0
        for _ in 0..<maximumBatches {
            let rows = try await db.query("""
                DELETE FROM sms.jobs WHERE id IN (
                    SELECT id FROM sms.jobs
                    WHERE finished_at < now() - make_interval(secs => $1::float8)
                    ORDER BY finished_at LIMIT $2)
                """, [String(seconds), String(batch)], prepared: true)
            deleted += rows.affectedRows
            if rows.affectedRows < batch { break }
        }
        return deleted
    }

    /// Operator `requeue`: failed/expired (or other finished) jobs back to pending with fresh attempts.
    /// The TTL counts from the requeue (created_at is reset), and idle daemons are woken.
    public static func requeue(_ db: PostgresConnection, states: [String], channel: String?, ids: [Int],
                               finishedWithinSeconds: Double?, limit: Int, dryRun: Bool) async throws -> [Int64] {
        let rows = try await db.query("""
            WITH picked AS (
                SELECT id FROM sms.jobs
                WHERE state = ANY ($1::text[])
                  AND ($2::text IS NULL OR channel = $2)
                  AND (cardinality($3::bigint[]) = 0 OR id = ANY ($3::bigint[]))
                  AND ($4::float8 IS NULL OR finished_at > now() - make_interval(secs => $4::float8))
                ORDER BY id LIMIT $5
                FOR UPDATE SKIP LOCKED
            ), requeued AS (
                UPDATE sms.jobs j SET state = 'pending', attempts = 0, run_at = now(), created_at = now(),
                    expires_at = NULL, finished_at = NULL, sent_at = NULL, uncertain = false, deferrals = 0,
                    message = 'requeued by an operator (was ' || j.state || ': ' || COALESCE(j.message, '') || ')',
                    updated_at = now()
                FROM picked WHERE j.id = picked.id AND NOT $6::bool
                RETURNING j.id
            )
            SELECT id FROM picked WHERE $6::bool
            UNION ALL SELECT id FROM requeued
            """,
            [PostgresArray.literal(states.map { Optional($0) }), channel, PostgresArray.literal(ids),
             finishedWithinSeconds.map { String($0) }, String(limit), dryRun ? "true" : "false"])
        let ids = try rows.rows.compactMap { try $0.int("id").map(Int64.init) }
        if !dryRun && !ids.isEmpty {
            // Requeued rows are not inserts: wake the idle daemons ourselves.
            try await db.query("SELECT pg_notify('sms_jobs', '')")
        }
        return ids
    }

    /// Operator `cancel`: pending jobs become `cancelled`. Returns, per id, what happened.
    public static func cancel(_ db: PostgresConnection, ids: [Int]) async throws -> [(id: Int64, result: String)] {
        let rows = try await db.query("""
            WITH target AS (SELECT unnest($1::bigint[]) AS id),
            cancelled AS (
                UPDATE sms.jobs j SET state = 'cancelled', finished_at = now(), updated_at = now(),
                    message = 'cancelled by an operator'
                WHERE j.id IN (SELECT id FROM target) AND j.state = 'pending'
                RETURNING j.id
            )
            SELECT t.id,
                   CASE WHEN c.id IS NOT NULL THEN 'cancelled'
                        WHEN j.id IS NULL THEN 'no such job'
                        WHEN j.state = 'running' THEN 'not cancelled: being sent right now'
                        ELSE 'not cancelled: already ' || j.state END AS result
            FROM target t LEFT JOIN cancelled c ON c.id = t.id LEFT JOIN sms.jobs j ON j.id = t.id
            ORDER BY t.id
            """, [PostgresArray.literal(ids)])
        return try rows.rows.map { (Int64(try $0.requiredInt("id")), try $0.requiredString("result")) }
    }

    /// Pending jobs due now: the queue depth metric.
    public static func dueJobs(_ db: PostgresConnection) async throws -> Int {
        try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'pending' AND run_at <= now()",
                           prepared: true).first?.int("n") ?? 0
    }

    /// Removes this worker's row on a clean stop: `sms.workers` lists running daemons.
    public static func unregister(_ db: PostgresConnection, worker: WorkerIdentity) async throws {
        try await db.query("DELETE FROM sms.workers WHERE id = $1 AND instance = $2", [worker.id, worker.instance])
    }

    /// Inserts one job; with an idempotency key, a repeat returns the first insert's id.
    public static func enqueue(_ db: PostgresConnection, channel: String, phoneNumber: String,
                               countryCode: String?, priority: Int?, idempotencyKey: String?,
                               expiresInSeconds: Double?) async throws -> (id: Int64, created: Bool) {
        let rows = try await db.query("""
            WITH inserted AS (
                INSERT INTO sms.jobs (channel, phone_number, phone_country_code, priority, idempotency_key, expires_at)
                VALUES ($1, $2, $3, COALESCE($4::smallint, 0), $5,
                        CASE WHEN $6::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $6::float8) END)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING id
            )
            SELECT id, true AS created FROM inserted
            UNION ALL
            SELECT id, false AS created FROM sms.jobs WHERE idempotency_key = $5 AND NOT EXISTS (SELECT 1 FROM inserted)
            """,
            [channel, phoneNumber, countryCode, priority.map(String.init), idempotencyKey, expiresInSeconds.map { String($0) }])
        guard let row = rows.first else {
            throw PostgresError(code: .badValue, message: "enqueue returned no id")
        }
        return (Int64(try row.requiredInt("id")), try row.bool("created") ?? true)
    }

    public static func queueStats(_ db: PostgresConnection) async throws -> [QueueStatsRow] {
        let rows = try await db.query("""
            SELECT channel, state, jobs, due, oldest_pending_age_s, sent_last_minute, sent_last_hour, deferred
            FROM sms.queue_stats ORDER BY channel, state
            """)
        return try rows.rows.map { row in
            QueueStatsRow(
                channel: try row.requiredString("channel"), state: try row.requiredString("state"),
                jobs: try row.requiredInt("jobs"), due: try row.requiredInt("due"),
                oldestPendingAgeSeconds: try row.double("oldest_pending_age_s"),
                sentLastMinute: try row.requiredInt("sent_last_minute"),
                sentLastHour: try row.requiredInt("sent_last_hour"),
                deferred: try row.requiredInt("deferred"))
        }
    }

    public static func workers(_ db: PostgresConnection) async throws -> [WorkerRow] {
        let rows = try await db.query("""
            SELECT id, host, pid, version, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started_at,
                   extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s,
                   in_flight, claimed, sent, failed, retried, rejected, expired, deferred, superseded,
                   instance, unwritten, oldest_unwritten_s
            FROM sms.workers ORDER BY started_at, id
            """)
        return try rows.rows.map { row in
            WorkerRow(
                id: try row.requiredString("id"), host: try row.requiredString("host"),
                pid: try row.requiredInt("pid"), version: try row.requiredString("version"),
                startedAt: try row.requiredString("started_at"),
                heartbeatAgeSeconds: try row.double("heartbeat_age_s") ?? 0,
                inFlight: try row.requiredInt("in_flight"), claimed: try row.requiredInt("claimed"),
                sent: try row.requiredInt("sent"), failed: try row.requiredInt("failed"),
                retried: try row.requiredInt("retried"), rejected: try row.requiredInt("rejected"),
                expired: try row.requiredInt("expired"), deferred: try row.requiredInt("deferred"),
                superseded: try row.requiredInt("superseded"), instance: try row.requiredString("instance"),
                unwritten: try row.requiredInt("unwritten"), oldestUnwrittenSeconds: try row.double("oldest_unwritten_s"))
        }
    }
}

public struct QueueStatsRow: Sendable, Codable, Equatable {
    public let channel: String
    public let state: String
    public let jobs: Int
    public let due: Int
    public let oldestPendingAgeSeconds: Double?
    public let sentLastMinute: Int
    public let sentLastHour: Int
    public let deferred: Int
}

public struct WorkerRow: Sendable, Codable, Equatable {
    public let id: String
    public let host: String
    public let pid: Int
    public let version: String
    public let startedAt: String
    public let heartbeatAgeSeconds: Double
    public let inFlight: Int
    public let claimed: Int
    public let sent: Int
    public let failed: Int
    public let retried: Int
    public let rejected: Int
    public let expired: Int
    public let deferred: Int
    public let superseded: Int
    /// Random per process: two daemons run with one worker id are two rows.
    public let instance: String
    /// Outcomes decided and not yet written, and how long writes have been failing (nil: they succeed).
    public let unwritten: Int
    public let oldestUnwrittenSeconds: Double?
}
