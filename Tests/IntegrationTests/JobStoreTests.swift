import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSJobStore
import SMSModel
import Testing

@testable import SMSEngine

@Suite("Claim and write-back SQL")
struct JobStoreTests {
    func insert(_ database: TestDatabase, _ values: String) async throws {
        try await database.query("INSERT INTO sms.jobs (channel, phone_number, priority, run_at) VALUES \(values)")
    }

    @Test func claimOrdersByPriorityThenRunAtAndSkipsFutureJobs() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(
            database,
            """
            ('CHANNEL_LOGIN', '13800000001', 0, now() - interval '3 s'),
            ('CHANNEL_LOGIN', '13800000002', 5, now() - interval '1 s'),
            ('CHANNEL_LOGIN', '13800000003', 0, now() - interval '5 s'),
            ('CHANNEL_LOGIN', '13800000004', 9, now() + interval '1 hour')
            """)
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "w1", limit: 10, lease: .seconds(30)))
        #expect(claimed.map(\.phoneNumber) == ["13800000002", "13800000003", "13800000001"])
        let again = try await db.run(ClaimJobs(worker: "w1", limit: 10, lease: .seconds(30)))
        #expect(again.isEmpty)
        let leased = try await database.query(
            "SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'running' AND locked_by = 'w1' AND locked_until > now()")
        #expect(try leased.first?.requiredInt("n") == 3)
        await db.close()
    }

    @Test func concurrentClaimsNeverOverlap() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '138' || lpad(g::text, 8, '0') FROM generate_series(1, 500) g
            """)
        let ids = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for worker in 0..<4 {
                group.addTask {
                    let db = try await database.connect()
                    var mine: [Int64] = []
                    for _ in 0..<200 {
                        let batch = try await db.run(ClaimJobs(worker: "w\(worker)", limit: 7, lease: .seconds(30)))
                        if batch.isEmpty { break }
                        mine += batch.map(\.id)
                    }
                    await db.close()
                    return mine
                }
            }
            var all: [Int64] = []
            for try await batch in group { all += batch }
            return all
        }
        #expect(ids.count == 500)
        #expect(Set(ids).count == 500)
    }

    /// Statistics taken before a burst (history analyzed, then thousands of jobs inserted) once made the
    /// write-back's coalescing join every open job with every other: 84 s for one batch with 30,000
    /// pending. Counted in index tuples read, not seconds, so a slow machine cannot fail it.
    @Test("claim and write-back stay index probes on statistics taken before a burst (generic plans)")
    func plansSurviveStaleStatistics() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, created_at, sent_at, finished_at)
            SELECT 'CHANNEL_LOGIN', '150' || lpad(g::text, 8, '0'), 'sent', 1, now() - interval '2 days',
                   now() - interval '2 days', now() - interval '2 days'
            FROM generate_series(1, 20000) g
            """)
        try await database.query("VACUUM ANALYZE sms.jobs")
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number) SELECT 'CHANNEL_LOGIN', '13' || lpad(g::text, 9, '0')
            FROM generate_series(1, 3000) g
            """)
        let db = try await database.connect()
        // What the daemon gets after five executions of a prepared statement, whatever it chooses then.
        try await db.execute("SET plan_cache_mode = force_generic_plan")
        func indexTuplesRead() async throws -> Int {
            _ = try await db.query("SELECT pg_stat_force_next_flush()")
            _ = try await db.query("SELECT pg_stat_clear_snapshot()")
            return try await db.query(
                """
                SELECT sum(idx_tup_read)::int AS n FROM pg_stat_user_indexes WHERE relname = 'jobs'
                """
            ).first?.requiredInt("n") ?? 0
        }
        let before = try await indexTuplesRead()
        let now = ContinuousClock.now
        for _ in 0..<3 {
            let claimed = try await db.run(ClaimJobs(worker: "w1", limit: 64, lease: .seconds(30)))
            #expect(claimed.count == 64)
            let call = CallRecord(httpStatus: 200, statusCode: 200, message: "", requestID: "r", startedAt: now, finishedAt: now)
            let written = try await db.run(
                CompleteJobs(
                    worker: "w1",
                    outcomes: claimed.map {
                        JobOutcome(job: $0.lease, state: .sent, message: "", call: call, coalesce: true)
                    }, throttleWindow: .seconds(60)))
            #expect(written.updated == 64)
        }
        let read = try await indexTuplesRead() - before
        // 192 jobs claimed and written: a few index entries each. The bad plans read millions.
        #expect(read < 5_000, "index tuples read for 3 claims and write-backs of 64: \(read)")
        await db.close()
    }

    @Test func writeBackIsFencedOnTheLeaseAndLogsAttempts() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(
            database,
            "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now()), ('CHANNEL_LOGIN', '13800000003', 0, now())"
        )
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "w1", limit: 10, lease: .seconds(30)))
        #expect(claimed.count == 3)
        // The third job's lease passed to another worker (as after a rescue and a new claim).
        try await database.query(
            "UPDATE sms.jobs SET locked_by = 'w2', lease_token = lease_token + 1000 WHERE phone_number = '13800000003'")
        let call = CallRecord(
            httpStatus: 200, statusCode: 200, apiCode: nil, message: "", requestID: "req-1",
            startedAt: .now - .milliseconds(200), finishedAt: .now)
        var retry = call
        retry.statusCode = 503
        retry.message = "busy, with \"quotes\", commas and {braces}"
        retry.requestID = "req-2"
        let byPhone = Dictionary(uniqueKeysWithValues: claimed.map { ($0.phoneNumber, $0.lease) })
        var stale = retry
        stale.requestID = "req-3"
        let written = try await db.run(
            CompleteJobs(
                worker: "w1",
                outcomes: [
                    JobOutcome(job: byPhone["13800000001"]!, state: .sent, message: "", call: call),
                    JobOutcome(
                        job: byPhone["13800000002"]!, state: .pending, message: retry.message, call: retry, retryIn: .seconds(60)),
                    // A stale claim's failed call: fenced out (the new holder's lease stands), but its call is logged.
                    JobOutcome(
                        job: byPhone["13800000003"]!, state: .pending, message: "stale", call: stale, retryIn: .seconds(1)),
                ], throttleWindow: .seconds(60)))
        #expect(written.updated == 2)
        let rows = try await database.query(
            """
            SELECT phone_number, state, attempts, status_code, http_status, request_id, message, locked_by,
                   run_at > now() + interval '50 s' AS later, sent_at IS NOT NULL AS has_sent_at, finished_at IS NOT NULL AS finished
            FROM sms.jobs ORDER BY phone_number
            """
        ).rows
        #expect(try rows[0].string("state") == "sent")
        #expect(try rows[0].int("attempts") == 1)
        #expect(try rows[0].string("request_id") == "req-1")
        #expect(try rows[0].bool("has_sent_at") == true && rows[0].bool("finished") == true)
        #expect(try rows[0].string("locked_by") == nil)
        #expect(try rows[1].string("state") == "pending")
        #expect(try rows[1].int("status_code") == 503)
        #expect(try rows[1].string("message") == retry.message)
        #expect(try rows[1].bool("later") == true)
        #expect(try rows[1].bool("finished") == false)
        #expect(try rows[2].string("state") == "running")
        #expect(try rows[2].string("locked_by") == "w2")
        #expect(try rows[2].int("attempts") == 0)
        let attempts = try await database.query(
            "SELECT job_id, attempt, outcome, request_id FROM sms.attempts ORDER BY request_id"
        ).rows
        // Every call made is logged, fenced out or not (the third under the row's current attempts).
        #expect(attempts.count == 3)
        #expect(try attempts.map { try $0.string("outcome") } == ["sent", "retry", "retry"])
        #expect(try attempts.map { try $0.int("attempt") } == [1, 1, 0])
        await db.close()
    }

    /// Issue 26: no SMS GenAuth accepted is labelled unsent, however late its answer comes.
    @Test("a call GenAuth accepted lands whatever became of its row; a second acceptance says a second SMS went out")
    func theTruthLate() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now())")
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "w1", limit: 10, lease: .seconds(30)))
        let byPhone = Dictionary(uniqueKeysWithValues: claimed.map { ($0.phoneNumber, $0) })
        let first = try #require(byPhone["13800000001"])
        let second = try #require(byPhone["13800000002"])
        // The first job's lease passed on (rescued and claimed again by w2); the second ended `expired`
        // (its holder away for longer than its TTL) with a retry's outcome never written.
        try await database.query("UPDATE sms.jobs SET locked_by = 'w2', lease_token = lease_token + 1000 WHERE id = \(first.id)")
        try await database.query(
            """
            UPDATE sms.jobs SET state = 'expired', message = 'expires_at passed', finished_at = now(), lease_token = NULL,
                locked_by = NULL, uncertain = true WHERE id = \(second.id)
            """)
        func accepted(_ requestID: String, statusCode: Int = 200) -> CallRecord {
            CallRecord(
                httpStatus: 200, statusCode: statusCode, message: "", requestID: requestID,
                startedAt: .now - .milliseconds(300), finishedAt: .now - .milliseconds(100))
        }
        let written = try await db.run(
            CompleteJobs(
                worker: "w1",
                outcomes: [
                    JobOutcome(job: first.lease, state: .sent, message: "", call: accepted("late-1")),
                    JobOutcome(job: second.lease, state: .sent, message: "", call: accepted("late-2")),
                ], throttleWindow: .seconds(60)))
        #expect(written.updated == 2)
        let rows = try await database.query(
            """
            SELECT id, state, request_id, message, locked_by, lease_token, uncertain, sent_at IS NOT NULL AS has_sent_at
            FROM sms.jobs ORDER BY id
            """
        ).rows
        for row in rows {
            #expect(try row.string("state") == "sent" && row.bool("has_sent_at") == true && row.bool("uncertain") == false)
            #expect(try row.string("locked_by") == nil && row.string("lease_token") == nil)
            let message = try row.string("message") ?? ""
            #expect(message.contains("an answer that came after the job had moved on: GenAuth accepted its call"), "\(message)")
        }
        #expect(try rows[1].string("message")?.contains("it was expired: expires_at passed") == true)
        // w2 held it: its call, granted or about to be, may go out unseen from now on (its answer is fenced out).
        #expect(try rows[0].string("message")?.contains("a second SMS is possible") == true)
        #expect(try rows[1].string("message")?.contains("second SMS") == false, "an expired job has no other call")
        // w2, the new holder, is fenced out: its reservation finds the job lost, its heartbeat extends nothing.
        let w2 = JobLease(id: first.id, token: first.lease.token + 1000)
        let verdicts = try await db.run(
            ReserveSends(
                jobs: [
                    valid(
                        ClaimedJob(
                            id: w2.id, leaseToken: w2.token,
                            channel: "CHANNEL_LOGIN", phoneNumber: "13800000001", phoneCountryCode: nil, attempts: 0,
                            maxAttempts: 5))
                ],
                window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
        #expect(verdicts.verdicts[first.id] == .lost)
        // Had w2 called already and GenAuth accepted that too: the phone had a second SMS, and the row says so.
        // A presumed-sent answer (GenAuth's 429) sent nothing: no such note.
        _ = try await db.run(
            CompleteJobs(
                worker: "w2",
                outcomes: [
                    JobOutcome(job: w2, state: .sent, message: "presumed sent: ...", call: accepted("proof", statusCode: 429))
                ], throttleWindow: .seconds(60)))
        #expect(
            try await database.query("SELECT message FROM sms.jobs WHERE id = \(first.id)").first?.string("message")?
                .contains("second SMS went out") == false)
        _ = try await db.run(
            CompleteJobs(
                worker: "w2",
                outcomes: [
                    JobOutcome(job: w2, state: .sent, message: "", call: accepted("twice"))
                ], throttleWindow: .seconds(60)))
        let doubled = try #require(
            try await database.query("SELECT state, request_id, message FROM sms.jobs WHERE id = \(first.id)").first)
        #expect(try doubled.string("state") == "sent" && doubled.string("request_id") == "late-1")
        #expect(
            try doubled.string("message")?.contains("a second SMS went out") == true
                && doubled.string("message")?.contains("twice") == true)
        // The same write again (its reply lost): nothing changes twice.
        _ = try await db.run(
            CompleteJobs(
                worker: "w1",
                outcomes: [
                    JobOutcome(job: first.lease, state: .sent, message: "", call: accepted("late-1"))
                ], throttleWindow: .seconds(60)))
        #expect(
            try await database.query("SELECT message FROM sms.jobs WHERE id = \(first.id)").first?.string("message")?
                .components(separatedBy: "second SMS went out").count == 2)
        let calls = try await database.query("SELECT count(*)::int AS n FROM sms.attempts").first?.requiredInt("n")
        #expect(calls == 4, "every call GenAuth answered is in sms.attempts once, the write's retry adding none")
        await db.close()
    }

    @Test func expiredLeasesAreRescued() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now())")
        let db = try await database.connect()
        _ = try await db.run(ClaimJobs(worker: "dead", limit: 1, lease: .milliseconds(10)))
        _ = try await db.run(ClaimJobs(worker: "alive", limit: 1, lease: .seconds(300)))
        try await Task.sleep(for: .milliseconds(50))
        let rescued = try await db.run(RescueExpiredLeases(policy: .atLeastOnce))
        #expect(rescued.count == 1)
        let row = try #require(
            try await database.query("SELECT state, message, attempts FROM sms.jobs WHERE id = $1", [String(rescued[0].id)]).first
        )
        #expect(try row.string("state") == "pending")
        #expect(try row.string("message")?.contains("lease of worker dead expired before its API call") == true)
        #expect(try row.int("attempts") == 0)
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'running' AND locked_by = 'alive'")
                .first?.requiredInt("n") == 1)
        await db.close()
    }

    @Test("a rescued job whose call may have gone out: retried under at-least-once, failed under at-most-once")
    func rescueFollowsTheDeliveryPolicy() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now())")
        let db = try await database.connect()
        for policy in [DeliveryPolicy.atLeastOnce, .atMostOnce] {
            try await database.query("UPDATE sms.jobs SET state = 'pending', attempts = 0, uncertain = false, finished_at = NULL")
            let claimed = try await db.run(ClaimJobs(worker: "dead", limit: 2, lease: .milliseconds(10)))
            // The first job's reservation marked it as sending; the second never got that far.
            let verdicts = try await db.run(
                ReserveSends(jobs: [valid(claimed[0])], window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
            #expect(verdicts.verdicts[claimed[0].id] == .granted(slot: .zero))
            try await Task.sleep(for: .milliseconds(50))
            let rescued = try await db.run(RescueExpiredLeases(policy: policy))
            #expect(rescued.count == 2)
            let rows = try await database.query(
                "SELECT id, state, attempts, uncertain, message, sending_at FROM sms.jobs ORDER BY id"
            ).rows
            let sending = try #require(rows.first { (try? $0.int("id")) == Int(claimed[0].id) })
            let idle = try #require(rows.first { (try? $0.int("id")) == Int(claimed[1].id) })
            #expect(try idle.string("state") == "pending" && idle.int("attempts") == 0)
            #expect(try sending.int("attempts") == 1)
            #expect(try sending.bool("uncertain") == true)
            #expect(try sending.string("sending_at") == nil)
            if policy == .atLeastOnce {
                #expect(try sending.string("state") == "pending")
                #expect(try sending.string("message")?.contains("retrying while GenAuth can still prove that call") == true)
                // Its proof window runs from the grant's slot (now, without a rate schedule): about a minute.
                let left =
                    try await database.query(
                        """
                        SELECT extract(epoch FROM proof_until - now())::float8 AS s FROM sms.jobs WHERE id = \(claimed[0].id)
                        """
                    ).first?.double("s") ?? 0
                #expect((55...60.5).contains(left), "\(left)")
            } else {
                #expect(try sending.string("state") == "failed")
                #expect(try sending.string("message")?.contains("may have been delivered") == true)
            }
            try await database.query("DELETE FROM sms.throttle")
        }
        await db.close()
    }

    /// Issue 26: the database away longer than the lease and GenAuth's window. The rescue can only
    /// guess, and a retry now may be a second SMS: the holder's own answer gets a while to land first.
    @Test("a rescue past the proof window waits for the holder's answer, which lands; the channel's attempt cap holds")
    func rescuePastTheProofWindow() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_VERIFY_MFA', '13800000002', 0, now())")
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "holder", limit: 2, lease: .milliseconds(10)))
        let verdicts = try await db.run(
            ReserveSends(jobs: claimed.map(valid), window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
        #expect(verdicts.verdicts.values.allSatisfy { $0 == .granted(slot: .zero) })
        // The grants were made 70 s ago (the database and every daemon away since), and the second
        // job's channel allows one attempt.
        try await database.query("UPDATE sms.throttle SET window_until = window_until - interval '70 seconds'")
        try await database.query("INSERT INTO sms.channel_settings (channel, max_attempts) VALUES ('CHANNEL_VERIFY_MFA', 1)")
        try await Task.sleep(for: .milliseconds(50))
        let rescued = try await db.run(
            RescueExpiredLeases(
                policy: .atLeastOnce, throttleWindow: .seconds(60),
                holderGrace: .seconds(15)))
        #expect(Set(rescued.map(\.state)) == [.pending, .failed])
        let login = try #require(
            try await database.query(
                """
                SELECT state, message, extract(epoch FROM run_at - now())::float8 AS wait FROM sms.jobs WHERE id = \(claimed[0].id)
                """
            ).first)
        #expect(try login.string("state") == "pending" && (13...15.5).contains(try login.double("wait") ?? 0))
        #expect(try login.string("message")?.contains("a second SMS is possible") == true)
        let mfa = try #require(try await database.query("SELECT state, message FROM sms.jobs WHERE id = \(claimed[1].id)").first)
        #expect(try mfa.string("state") == "failed")
        #expect(try mfa.string("message")?.contains("attempts exhausted (1 of 1)") == true)
        #expect(try mfa.string("message")?.contains("may have been delivered") == true)
        // The holder's own answers come back: both land (same claim, not claimed since).
        let call = CallRecord(httpStatus: 200, statusCode: 200, message: "", requestID: "r", startedAt: .now, finishedAt: .now)
        let written = try await db.run(
            CompleteJobs(
                worker: "holder",
                outcomes: claimed.map {
                    JobOutcome(job: $0.lease, state: .sent, message: "", call: call)
                }, throttleWindow: .seconds(60)))
        #expect(written.updated == 2)
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'sent'").first?.int("n") == 2)
        await db.close()
    }

    @Test("a held lease is extended with its claim's lease row, so the rescue leaves it; a lease not extended is rescued")
    func extendedLeasesAreNotRescued() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now())")
        let db = try await database.connect()
        let held = try await db.run(ClaimJobs(worker: "w", limit: 1, lease: .milliseconds(300)))
        let dropped = try await db.run(ClaimJobs(worker: "w", limit: 1, lease: .milliseconds(300)))
        #expect(held.count == 1 && dropped.count == 1)
        #expect(try await db.run(ExtendLeases(held: held.map(\.lease), lease: .seconds(30))) == 1)
        let lease =
            try await database.query(
                """
                SELECT extract(epoch FROM l.until - now())::float8 AS left_s FROM sms.leases l WHERE l.lease_token = $1
                """, [String(held[0].lease.token)]
            ).first?.double("left_s") ?? 0
        #expect(lease > 25)
        try await Task.sleep(for: .milliseconds(400))
        let rescued = try await db.run(RescueExpiredLeases(policy: .atLeastOnce))
        #expect(rescued.map(\.id) == dropped.map(\.id))
        let states = try await database.query("SELECT id, state FROM sms.jobs ORDER BY id").rows
            .map { "\(try $0.requiredInt("id")):\(try $0.requiredString("state"))" }
        #expect(states.contains("\(held[0].id):running") && states.contains("\(dropped[0].id):pending"))
        // The rescued claim's lease row is gone; the held one's stays.
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.leases").first?.int("n") == 1)
        await db.close()
    }

    @Test("a claim's lease row keeps its expiry while one of its jobs is not extended: that job alone is rescued on time")
    func aJobLeftOutOfAnExtensionIsRescued() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now())")
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "w", limit: 2, lease: .milliseconds(300)))
        #expect(claimed.count == 2)
        // The writer let go of the second (its outcome could not be written): only the first is held.
        #expect(try await db.run(ExtendLeases(held: [claimed[0].lease], lease: .seconds(30))) == 1)
        try await Task.sleep(for: .milliseconds(400))
        let rescued = try await db.run(RescueExpiredLeases(policy: .atLeastOnce))
        #expect(rescued.map(\.id) == [claimed[1].id])
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.leases").first?.int("n") == 1)
        await db.close()
    }

    @Test("retention forgets day-old windows, but not one that is still a running job's crash marker")
    func retentionKeepsLiveMarkers() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now()), ('CHANNEL_LOGIN', '13800000002', 0, now())")
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "dead", limit: 2, lease: .milliseconds(100)))
        let verdicts = try await db.run(
            ReserveSends(jobs: claimed.map(valid), window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
        #expect(verdicts.verdicts.values.allSatisfy { $0 == .granted(slot: .zero) })
        // The second job's outcome was written (its window is history); the first's holder is gone
        // and the database was away for a day and more.
        try await database.query(
            "UPDATE sms.jobs SET state = 'sent', lease_token = NULL, locked_by = NULL WHERE id = \(claimed[1].id)")
        try await database.query("UPDATE sms.throttle SET window_until = now() - interval '2 days'")
        let forgotten = try await db.run(ForgetStaleRows())
        #expect(forgotten.windows == 1)
        try await Task.sleep(for: .milliseconds(150))
        let rescued = try await db.run(RescueExpiredLeases(policy: .atLeastOnce))
        #expect(rescued.map(\.id) == [claimed[0].id])
        let row = try #require(
            try await database.query("SELECT uncertain, attempts FROM sms.jobs WHERE id = \(claimed[0].id)").first)
        #expect(
            try row.bool("uncertain") == true && row.int("attempts") == 1, "the rescue read the marker: the SMS may have gone out"
        )
        await db.close()
    }

    @Test("retention deletes for at most its time budget and says when more is left")
    func retentionHasATimeBudget() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, finished_at)
            SELECT 'CHANNEL_LOGIN', '150' || lpad(g::text, 8, '0'), 'sent', 1, now() - interval '40 days'
            FROM generate_series(1, 250) g
            """)
        let db = try await database.connect()
        let first = try #require(try await RetentionService.apply(retention(budget: .zero), on: db))
        #expect(first == RetentionService.Run(deleted: 100, more: true), "one batch, then the budget is spent")
        let rest = try #require(try await RetentionService.apply(retention(budget: .seconds(30)), on: db))
        #expect(rest == RetentionService.Run(deleted: 150, more: false))
        await db.close()
    }

    /// Issue 26: a retry of a call that may have gone out must reach GenAuth within its proof window; in a
    /// backlog it would wait behind every older due job of its priority (or any higher one).
    @Test(
        "the claim takes due retries of calls that may have gone out first; the caps spare them while their proof window is open")
    func proofRetriesFirstAndUncapped() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, priority, run_at)
            SELECT 'CHANNEL_LOGIN', '138' || lpad(g::text, 8, '0'), 10, now() - interval '1 hour' FROM generate_series(1, 50) g
            """)
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, attempts, uncertain, proof_until, run_at)
            VALUES ('CHANNEL_VERIFY_MFA', '13900000001', 1, true, now() + interval '30 s', now()),
                   ('CHANNEL_VERIFY_MFA', '13900000002', 1, true, now() - interval '30 s', now())
            """)
        let db = try await database.connect()
        let claimed = try await db.run(ClaimJobs(worker: "w", limit: 3, lease: .seconds(30)))
        #expect(claimed.map(\.phoneNumber) == ["13900000001", "13900000002", "13800000001"], "\(claimed.map(\.phoneNumber))")
        #expect(claimed[0].uncertain && claimed[0].proofUntil != nil)
        // The phone's hourly cap is reached (one sent); inside its proof window the retry is not a new SMS.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, sent_at) VALUES
                ('CHANNEL_LOGIN', '13900000001', 'sent', now()), ('CHANNEL_LOGIN', '13900000002', 'sent', now())
            """)
        let answer = try await db.run(
            ReserveSends(
                jobs: Array(claimed.prefix(2)).map(valid), window: .seconds(60),
                hourCap: 1, dayCap: 0, rate: 0))
        #expect(answer.verdicts[claimed[0].id] == .granted(slot: .zero))
        guard case .capped = answer.verdicts[claimed[1].id] else {
            Issue.record("past its proof window a retry may be a second SMS: capped like any")
            return
        }
        await db.close()
    }

    /// Issue 26, from the soak: a late acceptance landing on a job that another claim holds and was
    /// granted its call: that claim may have called (and died before writing), and its answer is fenced
    /// out from now on. The row must say a second SMS is possible.
    @Test("a late acceptance over a claim that was granted its call says a second SMS is possible")
    func lateOverAGrantedClaim() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insert(database, "('CHANNEL_LOGIN', '13800000001', 0, now())")
        let db = try await database.connect()
        let first = try #require(try await db.run(ClaimJobs(worker: "w1", limit: 1, lease: .milliseconds(10))).first)
        #expect(
            try await db.run(ReserveSends(jobs: [valid(first)], window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
                .verdicts[first.id] == .granted(slot: .zero))
        // w1's lease runs out (its answer not written yet); the rescue retries; w2 claims and is granted.
        try await Task.sleep(for: .milliseconds(50))
        _ = try await db.run(RescueExpiredLeases(policy: .atLeastOnce))
        let second = try #require(try await db.run(ClaimJobs(worker: "w2", limit: 1, lease: .seconds(30))).first)
        #expect(
            try await db.run(ReserveSends(jobs: [valid(second)], window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
                .verdicts[second.id] == .granted(slot: .zero))
        let call = CallRecord(
            httpStatus: 200, statusCode: 200, message: "", requestID: "w1-call",
            startedAt: .now - .seconds(1), finishedAt: .now)
        let written = try await db.run(
            CompleteJobs(
                worker: "w1",
                outcomes: [
                    JobOutcome(
                        job: first.lease, state: .sent,
                        message: "", call: call)
                ],
                throttleWindow: .seconds(60)))
        #expect(written.updated == 1 && written.secondSMS == 1)
        let message = try await database.query("SELECT message FROM sms.jobs").first?.string("message") ?? ""
        #expect(message.contains("GenAuth accepted its call") && message.contains("a second SMS is possible"), "\(message)")
        await db.close()
    }
}
