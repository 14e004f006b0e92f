import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

@testable import SMSEngine

/// Issue 11: under any single fault, every claimed job ends terminal (and true) or is back in
/// `pending` within lease + rescue interval after its holder stops holding it; no SMS GenAuth accepted
/// ends `failed`; nothing goes out twice outside the crash window. Real processes, the real database,
/// the sandbox. Each test prints one line per fault class: jobs, terminal, sent, duplicates, recovery.
@Suite("The row tells the truth under faults", .serialized)
struct TruthUnderFaultTests {
    static let quick = [
        "SMSD_LEASE_DURATION": "2", "SMSD_HEARTBEAT_INTERVAL": "0.5", "SMSD_LEASE_RESCUE_INTERVAL": "0.5",
        "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "0", "SMSD_CONCURRENCY": "16",
    ]

    func insertJobs(
        _ database: TestDatabase, count: Int, prefix: String, channel: String = "CHANNEL_LOGIN",
        priority: Int = 0, maxAttempts: Int = 5
    ) async throws {
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, priority, max_attempts)
            SELECT '\(channel)', '\(prefix)' || lpad(g::text, 11 - length('\(prefix)'), '0'), \(priority), \(maxAttempts)
            FROM generate_series(1, \(count)) g
            """)
    }

    func count(_ database: TestDatabase, _ condition: String) async throws -> Int {
        try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE \(condition)").first?.requiredInt("n") ?? 0
    }

    /// Accepted sends at the sandbox: all of them, and how many phone+channel pairs got more than one.
    func duplicates(_ sandbox: SandboxProcess) async throws -> (accepted: Int, duplicates: Int) {
        let report = try await sandbox.report()
        let distinct = Set(report.accepted.map { "\($0.phoneCountryCode ?? "")|\($0.phoneNumber)|\($0.channel)" }).count
        return (report.accepted.count, report.accepted.count - distinct)
    }

    func report(_ fault: String, _ database: TestDatabase, _ sandbox: SandboxProcess, recovered: Duration?) async throws {
        let counts = try await stateCounts(database)
        let jobs = counts.values.reduce(0, +)
        let terminal = jobs - (counts["pending"] ?? 0) - (counts["running"] ?? 0)
        let (_, duplicates) = try await duplicates(sandbox)
        let recovery = recovered.map { String(format: "%.1f s", $0.seconds) } ?? "-"
        print(
            "fault \(fault): jobs=\(jobs) terminal=\(terminal) sent=\(counts["sent"] ?? 0) failed=\(counts["failed"] ?? 0) duplicates=\(duplicates) recovered=\(recovery)"
        )
    }

    @Test("kill -9 and restart under the same worker.id: the dead process's jobs are rescued, not kept alive")
    func restartUnderFixedWorkerID() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "150"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 400, prefix: "140")
        var environment = Self.quick
        environment["SMSD_WORKER_ID"] = "fixed-worker"
        let first = try startDaemon(database: database, sandbox: sandbox, extra: environment)
        _ = await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 50 }
        first.signal(SIGKILL)
        _ = await first.waitForExit(timeout: .seconds(10))
        let killed = ContinuousClock.now
        let held = try await count(database, "state = 'running'")
        #expect(held > 0, "the kill should leave jobs running")
        let second = try startDaemon(database: database, sandbox: sandbox, extra: environment)
        defer { Task { await second.stop() } }
        // Every job the dead process held is back (or done) within lease + rescue interval (+ a margin
        // for the restart): the new process under the same id must not keep their leases alive.
        let heldRows = try await database.query("SELECT id, lease_token FROM sms.jobs WHERE state = 'running'").rows
        let pairs = try heldRows.map { "(\(try $0.requiredInt("id")), \(try $0.requiredInt("lease_token")))" }.joined(
            separator: ",")
        var released = true
        if !pairs.isEmpty {
            released = await eventually(timeout: .seconds(8)) {
                (try? await count(database, "state = 'running' AND (id, lease_token) IN (\(pairs))")) == 0
            }
        }
        #expect(released, "jobs held by the killed process stayed running: \(second.output)")
        let settled = await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 }
        let recovered = ContinuousClock.now - killed
        #expect(settled, "\(second.output)")
        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 400, "\(counts)")
        let (_, duplicates) = try await duplicates(sandbox)
        #expect(duplicates <= held, "at most the calls in flight at the kill may repeat")
        try await report("kill -9, restart under one worker.id", database, sandbox, recovered: recovered)
    }

    @Test("two live daemons with one worker.id: two worker rows, each holds only its own jobs, all sent once")
    func twoDaemonsShareOneID() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "50"])
        defer { Task { await sandbox.stop() } }
        var environment = Self.quick
        environment["SMSD_WORKER_ID"] = "twin"
        let daemons = try (0..<2).map { _ in try startDaemon(database: database, sandbox: sandbox, extra: environment) }
        defer { for daemon in daemons { Task { await daemon.stop() } } }
        #expect(
            await eventually(timeout: .seconds(10)) {
                ((try? await database.query("SELECT count(*)::int AS n FROM sms.workers WHERE id = 'twin'").first?.requiredInt(
                    "n")) ?? 0) == 2
            })
        try await insertJobs(database, count: 600, prefix: "141")
        #expect(await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 })
        #expect(try await stateCounts(database)["sent"] == 600)
        #expect(try await duplicates(sandbox).duplicates == 0)
        #expect(
            await eventually(timeout: .seconds(5)) {
                daemons.allSatisfy { $0.output.contains("another live daemon uses this worker.id") }
            })
        let status = try await ChildProcess.run(
            TestEnvironment.executable("sms-dispatcher"), ["status"],
            environment: ["SMSD_DATABASE_URL": database.url])
        #expect(status.output.contains("2 running daemons share the worker id twin"), "\(status.output)")
        try await report("two processes, one worker.id", database, sandbox, recovered: nil)
    }

    /// The database refuses writes with each SQLSTATE in turn, as after a failover (read-only), a full
    /// disk, a cancelled statement, a serialization failure, a lock timeout; then turns truly
    /// read-only for new sessions. A statement trigger on sms.jobs raises the error, so the daemon's
    /// own sessions see it mid-drain. Nothing may be lost or left running.
    @Test("a database that refuses writes (25006, 53100, 57014, 40001, 55P03, read-only sessions): outcomes kept, nothing stuck")
    func databaseRefusesWrites() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.execute(
            """
            CREATE TABLE public.fault (code text);
            INSERT INTO public.fault VALUES (NULL);
            CREATE FUNCTION public.inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE v_code text := (SELECT code FROM public.fault);
            BEGIN
                IF v_code IS NOT NULL THEN
                    RAISE EXCEPTION 'injected fault %', v_code USING ERRCODE = v_code;
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER inject_fault BEFORE INSERT OR UPDATE OR DELETE ON sms.jobs
                FOR EACH STATEMENT EXECUTE FUNCTION public.inject_fault();
            """)
        let sandbox = try await SandboxProcess.start(["--latency-ms", "100"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 1200, prefix: "142")
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: Self.quick)
        defer { Task { await daemon.stop() } }
        for code in ["25006", "53100", "57014", "40001", "55P03"] {
            _ = await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 50 }
            try await database.query("UPDATE public.fault SET code = $1", [code])
            // Longer than the lease (2 s): the heartbeat cannot extend leases either.
            try await Task.sleep(for: .seconds(3))
            try await database.query("ALTER TABLE sms.jobs DISABLE TRIGGER inject_fault")
            try await database.query("UPDATE public.fault SET code = NULL")
            try await database.query("ALTER TABLE sms.jobs ENABLE TRIGGER inject_fault")
        }
        // Truly read-only, as a standby: new sessions only, and the daemon's are cut once.
        let admin = try await PostgresConnection.connect(try TestEnvironment.adminURL)
        try await admin.query("ALTER DATABASE \(database.name) SET default_transaction_read_only = on")
        try await admin.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'sms-dispatcher%'",
            [database.name])
        try await Task.sleep(for: .seconds(3))
        try await admin.query("ALTER DATABASE \(database.name) RESET default_transaction_read_only")
        await admin.close()
        let back = ContinuousClock.now
        let settled = await eventually(timeout: .seconds(90)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemon.output.suffix(3000))")
        #expect(daemon.isRunning)
        let counts = try await stateCounts(database)
        let (accepted, duplicates) = try await duplicates(sandbox)
        #expect(counts["sent"] == 1200, "\(counts)")
        #expect(counts["failed"] == nil, "no job may fail for the database's faults: \(counts)")
        #expect(accepted - duplicates == 1200)
        // Refusals are logged once per outage, not once per retry.
        #expect(daemon.output.components(separatedBy: "write-back unavailable").count - 1 <= 7, "\(daemon.output.suffix(3000))")
        try await report("database refusing writes", database, sandbox, recovered: ContinuousClock.now - back)
    }

    /// The database refuses this daemon for longer than a lease (its connections cut, new ones refused),
    /// while GenAuth keeps answering: the calls in flight finish and their outcomes wait in memory. When
    /// the database is back, the rescuer may reach the expired leases first and, under at-most-once,
    /// mark them "delivery unknown"; the holder's true outcome must still land (same claim token).
    @Test("the database gone longer than a lease (at-most-once): every SMS GenAuth accepted ends sent")
    func databaseGoneLongerThanALease() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "300"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 600, prefix: "148")
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.quick.merging([
                "SMSD_DELIVERY_POLICY": "at-most-once", "SMSD_GENAUTH_TIMEOUT": "5",
            ]) { _, new in new })
        defer { Task { await daemon.stop() } }
        _ = await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 100 }
        let admin = try await PostgresConnection.connect(try TestEnvironment.adminURL)
        try await admin.query("ALTER DATABASE \(database.name) ALLOW_CONNECTIONS false")
        try await admin.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'sms-dispatcher%'",
            [database.name])
        // Longer than the lease (2 s) and the rescue interval.
        try await Task.sleep(for: .seconds(5))
        try await admin.query("ALTER DATABASE \(database.name) ALLOW_CONNECTIONS true")
        await admin.close()
        let back = ContinuousClock.now
        #expect(
            await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 },
            "\(daemon.output.suffix(3000))")
        #expect(daemon.isRunning)
        let report = try await sandbox.report()
        let accepted = Set(report.accepted.map(\.phoneNumber))
        let sentPhones = Set(
            try await database.query("SELECT phone_number FROM sms.jobs WHERE state = 'sent'").rows
                .map { try $0.requiredString("phone_number") })
        #expect(
            accepted.subtracting(sentPhones).isEmpty,
            "accepted by GenAuth but not sent on the row: \(accepted.subtracting(sentPhones).sorted().prefix(10))")
        #expect(report.accepted.count == accepted.count, "nothing twice")
        let failed = try await count(database, "state = 'failed'")
        try await self.report(
            "database gone longer than a lease (at-most-once; failed \(failed))", database, sandbox,
            recovered: ContinuousClock.now - back)
    }

    @Test("values a 32-bit column cannot hold: a sent SMS stays sent, anything else ends failed with the database's reason")
    func dataErrorsEndTrue() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        // 176000…: accepted, with an apiCode too big for int; 177000…: a statusCode too big for int.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, max_attempts) VALUES
            ('CHANNEL_LOGIN', '17600000001', 1), ('CHANNEL_LOGIN', '17700000001', 1), ('CHANNEL_LOGIN', '13800000001', 1)
            """)
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: Self.quick)
        defer { Task { await daemon.stop() } }
        #expect(await eventually(timeout: .seconds(20)) { (try? await unfinishedJobs(database)) == 0 }, "\(daemon.output)")
        let rows = try await database.query("SELECT phone_number, state, message FROM sms.jobs ORDER BY phone_number").rows
        let byPhone = try Dictionary(uniqueKeysWithValues: rows.map { (try $0.requiredString("phone_number"), $0) })
        #expect(try byPhone["13800000001"]?.string("state") == "sent")
        #expect(try byPhone["17600000001"]?.string("state") == "sent", "GenAuth accepted it")
        #expect(try byPhone["17600000001"]?.string("message")?.contains("could not be stored") == true)
        #expect(try byPhone["17700000001"]?.string("state") == "failed")
        #expect(try byPhone["17700000001"]?.string("message")?.contains("out of range") == true)
        #expect(daemon.isRunning)
    }

    /// The half-open probe handed to a job that the throttle then defers made no call; before the
    /// fix the breaker waited for its answer forever and deferred every job.
    @Test("a half-open probe whose job makes no call is handed back: GenAuth's recovery is noticed")
    func probeWithoutCallIsReleased() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.quick.merging([
                "SMSD_BREAKER_FAILURE_THRESHOLD": "3", "SMSD_BREAKER_COOL_DOWN": "1", "SMSD_GENAUTH_TIMEOUT": "10",
            ]) { _, new in new })
        defer { Task { await daemon.stop() } }
        // Three calls answered HTTP 503 (scripted numbers 172000 0…): the breaker opens.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, max_attempts) SELECT 'CHANNEL_LOGIN', '1720000000' || g, 1 FROM generate_series(1, 3) g
            """)
        #expect(await eventually(timeout: .seconds(10)) { daemon.output.contains("GenAuth circuit breaker open") })
        // The probe's job: its phone's window is held for an hour, so the throttle defers it.
        try await database.execute(
            """
            INSERT INTO sms.throttle (phone_key, channel, window_until, job_id) VALUES ('+86 13900000001', 'CHANNEL_LOGIN', now() + interval '1 hour', 0);
            INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13900000001');
            """)
        #expect(
            await eventually(timeout: .seconds(10)) {
                // Deferred past its deadline by the held window: it ends expired, and made no call.
                (try? await count(
                    database, "phone_number = '13900000001' AND message LIKE '%one SMS per phone per channel%' AND attempts = 0"))
                    == 1
            }, "the probe's job was deferred by the throttle: \(daemon.output)")
        let inserted = ContinuousClock.now
        try await insertJobs(database, count: 10, prefix: "1391")
        let sent = await eventually(timeout: .seconds(8)) {
            (try? await count(database, "phone_number LIKE '1391%' AND state = 'sent'")) == 10
        }
        let counts = try await stateCounts(database)
        #expect(sent, "10 jobs waiting after GenAuth recovered: \(counts) \(daemon.output)")
        print(
            "fault breaker probe without a call: 10 jobs sent \(String(format: "%.1f", (ContinuousClock.now - inserted).seconds)) s after insert"
        )
    }

    @Test("GenAuth accepts but answers after the timeout: every job ends sent, none twice")
    func lateAnswers() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        // Accepted calls are answered 1.5 s late; the daemon gives up after 1 s.
        let sandbox = try await SandboxProcess.start(["--late-answer-ms", "1500", "--late-answer-rate", "0.5"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 200, prefix: "143")
        let started = ContinuousClock.now
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.quick.merging([
                "SMSD_BREAKER_FAILURE_THRESHOLD": "0", "SMSD_GENAUTH_TIMEOUT": "1",
            ]) { _, new in new })
        defer { Task { await daemon.stop() } }
        #expect(
            await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 },
            "\(daemon.output.suffix(2000))")
        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 200, "no SMS GenAuth accepted may end failed: \(counts)")
        let (accepted, duplicates) = try await duplicates(sandbox)
        #expect(duplicates == 0 && accepted == 200)
        let presumed = try await count(database, "message LIKE 'presumed sent%'")
        #expect(presumed > 0, "late answers should have been resolved by GenAuth's 'too frequent'")
        try await report(
            "GenAuth answering after the timeout (presumed sent: \(presumed))", database, sandbox,
            recovered: ContinuousClock.now - started)
    }

    @Test("GenAuth unreachable under at-most-once: calls never sent are retried, not failed 'delivery unknown'")
    func notSentIsRetriedUnderAtMostOnce() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let first = try await SandboxProcess.start()
        let port = try #require(first.baseURL.split(separator: ":").last.map(String.init))
        let daemon = try startDaemon(
            database: database, sandbox: first,
            extra: Self.quick.merging([
                "SMSD_DELIVERY_POLICY": "at-most-once", "SMSD_BREAKER_FAILURE_THRESHOLD": "0", "SMSD_RETRY_MAX_DELAY": "0.5",
            ]) { _, new in new })
        defer { Task { await daemon.stop() } }
        #expect(
            await eventually(timeout: .seconds(10)) {
                ((try? await database.query("SELECT count(*)::int AS n FROM sms.workers").first?.requiredInt("n")) ?? 0) == 1
            })
        // GenAuth goes away (connection refused) and jobs arrive.
        await first.stop()
        // Attempts enough to outlast the outage however slowly the sandbox restarts on a busy machine
        // (each refused connection is an attempt, retried within half a second).
        try await insertJobs(database, count: 20, prefix: "144", maxAttempts: 100)
        _ = await eventually(timeout: .seconds(5)) { ((try? await count(database, "attempts > 0")) ?? 0) > 0 }
        try await Task.sleep(for: .seconds(1))
        #expect(try await count(database, "state = 'failed'") == 0, "a call that never left cannot be 'delivery unknown'")
        let sandbox = try await SandboxProcess.start(["--port", port])
        defer { Task { await sandbox.stop() } }
        let back = ContinuousClock.now
        #expect(await eventually(timeout: .seconds(20)) { (try? await unfinishedJobs(database)) == 0 })
        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 20, "\(counts)")
        try await report("GenAuth refusing connections (at-most-once)", database, sandbox, recovered: ContinuousClock.now - back)
    }

    /// The host's wall clock takes no part in what is written: call times travel as "so long ago" by
    /// the monotonic clock and become `now() - ago` in the database, so a host clock off by minutes
    /// (either way) cannot shift `sent_at`, the attempt's times or the phone's throttle window.
    /// (Run against a daemon under libfaketime, the process's own sleeps stop working, since libfaketime
    /// shifts the clocks Swift's timers read unevenly: so this is checked at the write-back itself.)
    @Test("times on rows and throttle windows come from the database's clock, never the host's")
    func databaseClockOnly() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await insertJobs(database, count: 1, prefix: "145")
        let db = try await database.connect()
        let job = try #require(try await db.run(ClaimJobs(worker: "w", limit: 1, lease: .seconds(30))).first)
        let verdicts = try await db.run(ReserveSends(jobs: [valid(job)], window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0))
        #expect(verdicts.verdicts[job.id] == .granted(slot: .zero))
        // The reservation's window holds a second past the slot: as if granted long ago, so that the
        // write-back must move it to the call's end.
        try await database.query("UPDATE sms.throttle SET window_until = now()")
        // A call that ended 2 s ago (by the monotonic clock) and took 1 s.
        let finished = ContinuousClock.now - .seconds(2)
        let call = CallRecord(
            httpStatus: 200, statusCode: 200, message: "", requestID: "r",
            startedAt: finished - .seconds(1), finishedAt: finished)
        try await db.run(
            CompleteJobs(
                worker: "w", outcomes: [JobOutcome(job: job.lease, state: .sent, message: "", call: call)],
                throttleWindow: .seconds(60)))
        let row = try #require(
            try await database.query(
                """
                SELECT extract(epoch FROM now() - j.sent_at)::float8 AS sent_ago,
                       extract(epoch FROM t.window_until - now())::float8 AS window_left,
                       extract(epoch FROM a.finished_at - a.started_at)::float8 AS took
                FROM sms.jobs j JOIN sms.throttle t ON t.job_id = j.id JOIN sms.attempts a ON a.job_id = j.id
                """
            ).first)
        #expect(abs((try row.double("sent_ago") ?? 99) - 2) < 0.5)
        #expect(abs((try row.double("window_left") ?? 99) - 58) < 0.5)
        #expect(abs((try row.double("took") ?? 99) - 1) < 0.05)
        await db.close()
    }

    /// An operator's transaction holds a lock on sms.jobs longer than the daemon's lock timeout: the
    /// daemon's statements give up (55P03) instead of hanging past the watchdog, the worker row shows
    /// the outcomes waiting, and all of them land once the lock is gone.
    @Test("an operator's lock on sms.jobs: bounded waits, a visible backlog, nothing lost")
    func operatorHoldsALock() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "50"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 600, prefix: "146")
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.quick.merging([
                "SMSD_LEASE_DURATION": "6"
            ]) { _, new in new })
        defer { Task { await daemon.stop() } }
        _ = await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 50 }
        let operatorSession = try await database.connect()
        try await operatorSession.execute("BEGIN; LOCK TABLE sms.jobs IN EXCLUSIVE MODE")
        let backlogShown = await eventually(timeout: .seconds(4)) {
            ((try? await database.query("SELECT max(unwritten)::int AS n FROM sms.workers").first?.int("n")) ?? 0) > 0
        }
        let failing = await eventually(timeout: .seconds(4)) {
            let status = try? await ChildProcess.run(
                TestEnvironment.executable("sms-dispatcher"), ["status"],
                environment: ["SMSD_DATABASE_URL": database.url])
            return status?.output.contains("cannot write back") == true
        }
        #expect(failing, "status should warn that the write-back is failing")
        try await operatorSession.execute("COMMIT")
        await operatorSession.close()
        let released = ContinuousClock.now
        #expect(backlogShown, "sms.workers.unwritten should show outcomes waiting for the lock")
        #expect(await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 })
        #expect(daemon.isRunning)
        #expect(try await stateCounts(database)["sent"] == 600)
        #expect(try await duplicates(sandbox).duplicates == 0)
        try await report("operator lock on sms.jobs", database, sandbox, recovered: ContinuousClock.now - released)
    }

    /// Issue 26: a producer's absurd value is refused at the database, before a daemon reads a byte of
    /// it (three 100 MB numbers once took a daemon to 805 MB); pending rows from before the bound are
    /// rejected by the migration that adds it.
    @Test("producer values are bounded at the database: refused by name at INSERT; older pending rows rejected by the migration")
    func hugeProducerValues() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let all = try Migrator.load(directory: TestEnvironment.sqlDirectory)
        let db = try await database.connect()
        try await Migrator(migrations: all.migrations.filter { $0.version <= 13 }).migrate(db, logger: quietLogger)
        // Before the bound: a 10 MB number and a 6,000-digit country code, pending.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code)
            VALUES ('CHANNEL_LOGIN', repeat('1', 10000000), NULL), ('CHANNEL_LOGIN', '13800000001', repeat('+', 6000)),
                   ('CHANNEL_LOGIN', '13800000003', NULL)
            """)
        try await all.migrate(db, logger: quietLogger)
        await db.close()
        let early = try await database.query(
            """
            SELECT state, message FROM sms.jobs WHERE phone_number <> '13800000003' ORDER BY id
            """
        ).rows
        #expect(try early.map { try $0.requiredString("state") } == ["rejected", "rejected"])
        let message = try early[0].string("message") ?? ""
        #expect(message.contains("10000000 bytes"), "\(message)")
        for (number, code, constraint) in [
            ("repeat('1', 20000000)", "NULL", "jobs_phone_number_length"),
            ("string_agg((random() * 9)::int::text, '')", "NULL", "jobs_phone_number_length"),
            ("'13800000001'", "repeat('+', 17)", "jobs_phone_country_code_length"),
            ("'13800000002'", "NULL", "jobs_idempotency_key_length"),
        ] {
            do {
                try await database.query(
                    """
                    INSERT INTO sms.jobs (channel, phone_number, phone_country_code, idempotency_key)
                    SELECT 'CHANNEL_LOGIN', \(number), \(code), CASE WHEN \(number) = '13800000002' THEN repeat('k', 5000) END
                    FROM generate_series(1, 6000)
                    HAVING true
                    """)
                Issue.record("an over-long value was accepted (\(constraint))")
            } catch let error as PostgresError {
                #expect(error.message.contains(constraint), "\(error)")
            }
        }
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: Self.quick)
        defer { Task { await daemon.stop() } }
        #expect(await eventually(timeout: .seconds(20)) { (try? await unfinishedJobs(database)) == 0 })
        #expect(try await stateCounts(database) == ["rejected": 2, "sent": 1])
    }

    @Test("a management token with an absurd expires_in neither traps the daemon nor stops the sends")
    func hugeTokenLifetime() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start([
            "--access-key-id", "key-1", "--access-key-secret", "s3cret", "--token-ttl", "1e300",
        ])
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.quick.merging([
                "SMSD_GENAUTH_ACCESS_KEY_ID": "key-1", "SMSD_GENAUTH_ACCESS_KEY_SECRET": "s3cret",
            ]) { _, new in new })
        defer { Task { await daemon.stop() } }
        try await insertJobs(database, count: 20, prefix: "147")
        #expect(
            await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) == 20 },
            "\(daemon.output)")
        #expect(daemon.isRunning)
    }
}
