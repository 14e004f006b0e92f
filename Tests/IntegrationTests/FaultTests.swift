import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

@testable import SMSEngine

/// Issue 4: processes killed, PostgreSQL restarted, GenAuth down, rows malformed. Real processes,
/// real signals, the real database and the sandbox; every loop bounded in count and time.
@Suite("Crash safety and fault tolerance", .serialized)
struct FaultTests {
    /// Fast leases and rescue, so a killed daemon's jobs come back within a second or two.
    static let fastLeases = [
        "SMSD_LEASE_DURATION": "2", "SMSD_HEARTBEAT_INTERVAL": "0.5", "SMSD_LEASE_RESCUE_INTERVAL": "0.5",
        "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "0", "SMSD_CONCURRENCY": "16",
    ]

    func insertJobs(_ database: TestDatabase, count: Int, prefix: String) async throws {
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '\(prefix)' || lpad(g::text, 11 - length('\(prefix)'), '0') FROM generate_series(1, \(count)) g
            """)
    }

    /// Kills one of two daemons with SIGKILL every `interval` while the queue drains, restarting it each
    /// time. Returns the number of kills.
    func drainWhileKilling(
        _ database: TestDatabase, _ sandbox: SandboxProcess, environment: [String: String],
        kills maximumKills: Int
    ) async throws -> (kills: Int, outputs: [String]) {
        let survivor = try startDaemon(database: database, sandbox: sandbox, extra: environment)
        defer { Task { await survivor.stop() } }
        var victim = try startDaemon(database: database, sandbox: sandbox, extra: environment)
        var outputs: [String] = []
        var kills = 0
        let deadline = ContinuousClock.now + .seconds(120)
        while kills < maximumKills && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(1500))
            guard (try await unfinishedJobs(database)) > 500 else { break }
            victim.signal(SIGKILL)
            _ = await victim.waitForExit(timeout: .seconds(10))
            outputs.append(victim.output)
            kills += 1
            victim = try startDaemon(database: database, sandbox: sandbox, extra: environment)
        }
        let settled = await eventually(timeout: .seconds(120)) { (try? await unfinishedJobs(database)) == 0 }
        let unfinished = try await unfinishedJobs(database)
        #expect(settled, "unfinished: \(unfinished)")
        #expect(survivor.isRunning && victim.isRunning)
        outputs.append(survivor.output)
        await victim.stop()
        return (kills, outputs)
    }

    @Test("kill -9 during a 5,000-job drain, at-least-once: nothing lost, duplicates at most one per kill")
    func killsAtLeastOnce() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "80"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 5000, prefix: "132")
        let (kills, _) = try await drainWhileKilling(database, sandbox, environment: Self.fastLeases, kills: 4)
        #expect(kills >= 3, "the drain ended before the daemon could be killed often enough")
        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 5000, "\(counts)")
        let report = try await sandbox.report()
        let distinct = Set(report.accepted.map { "\($0.phoneNumber)|\($0.channel)" }).count
        #expect(distinct == 5000)
        let duplicates = report.accepted.count - distinct
        #expect(duplicates <= kills, "duplicates \(duplicates), kills \(kills)")
        let presumed =
            try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE message LIKE 'presumed sent%'").first?
            .requiredInt("n") ?? 0
        print(
            "kill test (at-least-once): kills=\(kills) duplicates=\(duplicates) presumed-sent=\(presumed) calls=\(report.requests)"
        )
    }

    @Test("kill -9 during a 5,000-job drain, at-most-once: no duplicate, every uncertain job says so")
    func killsAtMostOnce() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "80"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 5000, prefix: "133")
        var environment = Self.fastLeases
        environment["SMSD_DELIVERY_POLICY"] = "at-most-once"
        let (kills, _) = try await drainWhileKilling(database, sandbox, environment: environment, kills: 4)
        #expect(kills >= 3)
        let report = try await sandbox.report()
        let distinct = Set(report.accepted.map { "\($0.phoneNumber)|\($0.channel)" }).count
        #expect(report.accepted.count == distinct, "no SMS went out twice")
        let counts = try await stateCounts(database)
        #expect((counts["sent"] ?? 0) + (counts["failed"] ?? 0) == 5000, "\(counts)")
        let unexplained = try await database.query(
            """
            SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'failed' AND message NOT LIKE 'delivery unknown%'
            """
        ).first?.requiredInt("n")
        #expect(unexplained == 0)
        #expect((counts["failed"] ?? 0) > 0, "killing mid-call should leave some deliveries unknown")
        // Every job the sandbox did not accept and that is not sent must be one the daemon marked unknown.
        #expect(distinct >= counts["sent"] ?? 0)
        print("kill test (at-most-once): kills=\(kills) unknown=\(counts["failed"] ?? 0) accepted=\(report.accepted.count)")
    }

    @Test("PostgreSQL restarted twice mid-run: no job or result lost, the daemon reconnects by itself")
    func databaseRestarts() async throws {
        let environment = ProcessInfo.processInfo.environment
        let pgCtl = try #require(environment["SMSD_TEST_PG_CTL"], "run under scripts/with-postgres.sh")
        let data = try #require(environment["SMSD_TEST_PG_DATA"])
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "50"])
        defer { Task { await sandbox.stop() } }
        try await insertJobs(database, count: 3000, prefix: "134")
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_CONCURRENCY": "16", "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
            ])
        defer { Task { await daemon.stop() } }
        let restart = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--", pgCtl] : [pgCtl]
        for round in 1...2 {
            _ = await eventually(timeout: .seconds(30)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 700 * round }
            let status = try await runDetachingGrandchildren(
                restart + [
                    "-D", data, "-m", "fast", "-w", "-t", "60", "-l", data + "/../server.log", "restart",
                ])
            #expect(status == 0)
        }
        let settled = await eventually(timeout: .seconds(90)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemon.output)")
        #expect(daemon.isRunning, "the daemon must survive database restarts: \(daemon.output)")
        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 3000, "\(counts)")
        let report = try await sandbox.report()
        #expect(report.accepted.count == 3000, "every accepted call is on a row, none twice")
        let outages = daemon.output.components(separatedBy: "database unavailable").count - 1
        #expect(outages >= 1 && outages <= 2, "logged once per outage, not once per retry:\n\(daemon.output)")
        #expect(daemon.output.contains("database back"))
        let reconnects = daemon.output.split(separator: "\n").filter { $0.contains("database back") }
        print("database restarts: \(reconnects.joined(separator: " | "))")
    }

    @Test("GenAuth down (refused, then 503, then 429): no job fails while attempts remain, the breaker bounds the calls")
    func apiOutage() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let first = try await SandboxProcess.start()
        defer { Task { await first.stop() } }
        let port = try #require(first.baseURL.split(separator: ":").last.map(String.init))
        var sandbox = first
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_CONCURRENCY": "8", "SMSD_BREAKER_FAILURE_THRESHOLD": "5", "SMSD_BREAKER_COOL_DOWN": "1",
                "SMSD_RETRY_BASE_DELAY": "0.2", "SMSD_RETRY_MAX_DELAY": "1",
            ])
        defer { Task { await daemon.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, max_attempts)
            SELECT 'CHANNEL_LOGIN', '135' || lpad(g::text, 8, '0'), 8 FROM generate_series(1, 300) g
            """)
        _ = await eventually(timeout: .seconds(10)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 50 }
        // Phase 1: GenAuth unreachable (connection refused) for 4 s.
        await sandbox.stop()
        try await Task.sleep(for: .seconds(4))
        // Phase 2: back, but answering 503 to everything for 4 s.
        sandbox = try await SandboxProcess.start(["--port", port, "--fail-503", "1"])
        let second = sandbox
        defer { Task { await second.stop() } }
        try await Task.sleep(for: .seconds(4))
        // Phase 3: 429 with Retry-After: 1 for 2 s, then healthy.
        _ = try await HTTP.request(
            "POST", sandbox.baseURL + "/__sandbox/faults", headers: [("content-type", "application/json")],
            body: #"{"latencyMs":0,"rate503":0,"rate429":1,"rateTimeout":0,"hangSeconds":30,"retryAfterSeconds":1}"#)
        try await Task.sleep(for: .seconds(2))
        let during = try await sandbox.report()
        _ = try await HTTP.request(
            "POST", sandbox.baseURL + "/__sandbox/faults", headers: [("content-type", "application/json")],
            body: #"{"latencyMs":0,"rate503":0,"rate429":0,"rateTimeout":0,"hangSeconds":30,"retryAfterSeconds":1}"#)
        let settled = await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemon.output)")
        #expect(daemon.isRunning)
        let counts = try await stateCounts(database)
        let unsent = try await database.query("SELECT id, state, attempts, message FROM sms.jobs WHERE state <> 'sent' LIMIT 5")
            .rows
            .map {
                "\((try? $0.int("id")) ?? 0) \((try? $0.string("state")) ?? "") attempts=\((try? $0.int("attempts")) ?? 0): \((try? $0.string("message")) ?? "")"
            }
        #expect(counts["sent"] == 300, "no job may fail while it has attempts left: \(counts) \(unsent)")
        let calls503 = during.answers["http-503"] ?? 0
        // Without the breaker every pending job would have burned attempts on 503s (hundreds of calls).
        #expect(calls503 <= 40, "503 answers during the outage: \(calls503)")
        #expect(daemon.output.contains("GenAuth circuit breaker open"))
        let deferred =
            try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE deferrals > 0").first?.requiredInt("n") ?? 0
        #expect(deferred > 0, "jobs waited for the breaker instead of burning attempts")
        print("API outage: 503 answers \(calls503), 429 answers \(during.answers["http-429"] ?? 0), deferred jobs \(deferred)")
    }

    @Test("whatever a producer inserts, every row ends terminal with a clear message and the daemon keeps going")
    func badRows() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        // As if a producer's migration tool had bypassed the CHECK.
        try await database.query("ALTER TABLE sms.jobs DROP CONSTRAINT jobs_channel_check")
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code, metadata) VALUES
            ('CHANNEL_SPAM', '13800000001', NULL, NULL),
            ('', '13800000002', NULL, NULL),
            ('CHANNEL_LOGIN', 'thirteen', NULL, NULL),
            ('CHANNEL_LOGIN', '１３８００００００１', NULL, NULL),
            ('CHANNEL_LOGIN', '138 0000 0003', NULL, NULL),
            ('CHANNEL_LOGIN', '138-0000-0004', NULL, NULL),
            ('CHANNEL_LOGIN', repeat('9', 40), NULL, NULL),
            ('CHANNEL_LOGIN', repeat('9', 64), '+1', NULL),
            ('CHANNEL_LOGIN', '138000+00005', NULL, NULL),
            ('CHANNEL_LOGIN', '13800000006', '86', NULL),
            ('CHANNEL_LOGIN', '13800000007', '0086', NULL),
            ('CHANNEL_LOGIN', '13800000008', '+', NULL),
            ('CHANNEL_LOGIN', '13800000009', '', NULL),
            ('CHANNEL_LOGIN', '📱13800000010', NULL, NULL),
            ('CHANNEL_LOGIN', '', NULL, NULL),
            ('CHANNEL_LOGIN', '13800000011', NULL, (SELECT jsonb_object_agg('k' || g, repeat('x', 100)) FROM generate_series(1, 10000) g)),
            ('CHANNEL_LOGIN', '13800000012', NULL, '{"good": true}')
            """)
        let daemon = try startDaemon(database: database, sandbox: sandbox)
        defer { Task { await daemon.stop() } }
        let settled = await eventually(timeout: .seconds(30)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemon.output)")
        #expect(daemon.isRunning)
        let rows = try await database.query("SELECT id, phone_number, state, message FROM sms.jobs ORDER BY id").rows
        for row in rows {
            let state = try row.string("state")
            let message = try row.string("message") ?? ""
            if try row.string("phone_number")?.hasPrefix("1380000001") == true && (state == "sent") { continue }
            let id = try row.int("id") ?? 0
            #expect(state == "rejected", "\(id): \(state ?? "") \(message)")
            #expect(message.count > 15, "a clear message: \(message)")
        }
        #expect(
            try rows.filter { try $0.string("state") == "sent" }.count == 2, "the huge-metadata row and the good row are sent")
        #expect(try await sandbox.report().requests == 2)
    }

    @Test("management-token mode: fetched once, cached, refreshed once on 401; a wrong secret burns no attempt")
    func managementToken() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--access-key-id", "key-1", "--access-key-secret", "s3cret"])
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_GENAUTH_ACCESS_KEY_ID": "key-1", "SMSD_GENAUTH_ACCESS_KEY_SECRET": "s3cret",
            ])
        defer { Task { await daemon.stop() } }
        try await insertJobs(database, count: 50, prefix: "136")
        #expect(await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) == 50 })
        #expect(try await sandbox.report().tokensIssued == 1)
        _ = try await HTTP.request("POST", sandbox.baseURL + "/__sandbox/revoke-tokens")
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number) SELECT 'CHANNEL_REGISTER', '136' || lpad(g::text, 8, '0') FROM generate_series(1, 50) g
            """)
        #expect(await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) == 100 })
        #expect(try await stateCounts(database)["failed"] == nil)
        let issued = try await sandbox.report().tokensIssued
        #expect(issued >= 2 && issued <= 4, "refreshed after the 401, not once per call: \(issued)")
        #expect(!daemon.output.contains("s3cret"))
        await daemon.stop()

        let wrong = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_GENAUTH_ACCESS_KEY_ID": "key-1", "SMSD_GENAUTH_ACCESS_KEY_SECRET": "wrong",
                "SMSD_BREAKER_FAILURE_THRESHOLD": "3", "SMSD_BREAKER_COOL_DOWN": "5",
            ])
        defer { Task { await wrong.stop() } }
        try await database.query("INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_BIND_MFA', '13600000001')")
        try await Task.sleep(for: .seconds(3))
        let row = try #require(
            try await database.query("SELECT state, attempts, message FROM sms.jobs WHERE channel = 'CHANNEL_BIND_MFA'").first)
        let message = try row.string("message") ?? ""
        #expect(try row.string("state") == "pending", "\(message)")
        #expect(try row.int("attempts")! <= 3)
        #expect(!wrong.output.contains("wrong\""))
    }

    @Test("a second SIGTERM exits at once")
    func secondSignal() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "20000"])
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox, extra: ["SMSD_GENAUTH_TIMEOUT": "30", "SMSD_SHUTDOWN_GRACE": "30"])
        defer { Task { await daemon.stop() } }
        try await insertJobs(database, count: 5, prefix: "137")
        _ = await eventually(timeout: .seconds(10)) { ((try? await sandbox.report().requests) ?? 0) == 5 }
        daemon.signal(SIGTERM)
        try await Task.sleep(for: .milliseconds(500))
        #expect(daemon.isRunning, "the first signal waits for the calls in flight")
        let start = ContinuousClock.now
        daemon.signal(SIGTERM)
        let status = await daemon.waitForExit(timeout: .seconds(5))
        #expect(status == 130, "\(daemon.output)")
        #expect(ContinuousClock.now - start < .seconds(3))
    }
}
