import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// The whole path through real processes: rows inserted by plain SQL, the `sms-dispatcher run` daemon,
/// the `genauth-sandbox` over HTTP on 127.0.0.1, and the rows read back.
@Suite("Dispatch end to end", .serialized)
struct EndToEndTests {
    @Test("every outcome class reaches the row, the attempts log and the sandbox")
    func everyOutcome() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--hang-seconds", "3"])
        defer { Task { await sandbox.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code, max_attempts, expires_at, metadata) VALUES
            ('CHANNEL_LOGIN',        '13800000001', NULL,  5, NULL, '{"case": "sent"}'),
            ('CHANNEL_VERIFY_MFA',   '13800000001', '+86', 5, NULL, '{"case": "sent, +86 sent without code"}'),
            ('CHANNEL_LOGIN',        '17000000001', NULL,  5, NULL, '{"case": "permanent"}'),
            ('CHANNEL_LOGIN',        '17100011234', NULL,  5, NULL, '{"case": "body 500 then sent"}'),
            ('CHANNEL_REGISTER',     '17200011234', NULL,  5, NULL, '{"case": "HTTP 503 then sent"}'),
            ('CHANNEL_BIND_PHONE',   '17300011234', NULL,  5, NULL, '{"case": "HTTP 429 then sent"}'),
            ('CHANNEL_BIND_MFA',     '17400011234', NULL,  5, NULL, '{"case": "timeout then sent"}'),
            ('CHANNEL_UNBIND_MFA',   '17500011234', NULL,  5, NULL, '{"case": "body 601 then sent"}'),
            ('CHANNEL_LOGIN',        '17100001234', NULL,  3, NULL, '{"case": "always 500: exhausted"}'),
            ('CHANNEL_LOGIN',        '138-0013-8000', NULL, 5, NULL, '{"case": "rejected number"}'),
            ('CHANNEL_LOGIN',        '13800000002', '86',  5, NULL, '{"case": "rejected country code"}'),
            ('CHANNEL_LOGIN',        '13800000003', NULL,  5, now() - interval '1 second', '{"case": "expired"}'),
            ('CHANNEL_LOGIN',        '5551234567', '+1',   5, NULL, '{"case": "international not enabled"}')
            """)
        let daemon = try startDaemon(database: database, sandbox: sandbox)
        defer { Task { await daemon.stop() } }
        let settled = await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "jobs still unfinished; daemon output:\n\(daemon.output)")
        #expect(daemon.isRunning, "the daemon must keep running: \(daemon.output)")

        let rows = try await database.query(
            """
            SELECT id, metadata->>'case' AS c, phone_number, state, attempts, status_code, api_code, http_status, message, request_id
            FROM sms.jobs ORDER BY id
            """
        ).rows
        var byCase: [String: PostgresRow] = [:]
        for row in rows { byCase[try row.requiredString("c")] = row }
        func check(_ name: String, state: String, attempts: Int, statusCode: Int?) throws {
            let row = try #require(byCase[name])
            let message = try row.string("message") ?? ""
            #expect(try row.string("state") == state, "\(name): \(message)")
            #expect(try row.int("attempts") == attempts, "\(name)")
            #expect(try row.int("status_code") == statusCode, "\(name)")
        }
        try check("sent", state: "sent", attempts: 1, statusCode: 200)
        try check("sent, +86 sent without code", state: "sent", attempts: 1, statusCode: 200)
        try check("permanent", state: "failed", attempts: 1, statusCode: 400)
        #expect(try byCase["permanent"]?.int("api_code") == 2010)
        #expect(try byCase["permanent"]?.string("message") == "phone number is on the SMS blocklist")
        try check("body 500 then sent", state: "sent", attempts: 2, statusCode: 200)
        try check("HTTP 503 then sent", state: "sent", attempts: 2, statusCode: 200)
        try check("HTTP 429 then sent", state: "sent", attempts: 2, statusCode: 200)
        try check("timeout then sent", state: "sent", attempts: 2, statusCode: 200)
        try check("body 601 then sent", state: "sent", attempts: 2, statusCode: 200)
        try check("always 500: exhausted", state: "failed", attempts: 3, statusCode: 500)
        #expect(try byCase["always 500: exhausted"]?.string("message")?.contains("attempts exhausted (3 of 3)") == true)
        try check("rejected number", state: "rejected", attempts: 0, statusCode: nil)
        #expect(try byCase["rejected number"]?.string("message")?.contains("contains '-' at position 4") == true)
        try check("rejected country code", state: "rejected", attempts: 0, statusCode: nil)
        #expect(try byCase["rejected country code"]?.string("message")?.contains("phone_country_code") == true)
        try check("expired", state: "expired", attempts: 0, statusCode: nil)
        try check("international not enabled", state: "rejected", attempts: 0, statusCode: nil)
        #expect(try byCase["international not enabled"]?.string("message")?.contains("countries.international") == true)

        // The attempts log: one row per call, in order, with what each call got.
        let attempts = try await database.query(
            """
            SELECT j.metadata->>'case' AS c, a.attempt, a.outcome, a.http_status, a.status_code, a.message,
                   extract(epoch FROM a.started_at)::float8 AS started
            FROM sms.attempts a JOIN sms.jobs j ON j.id = a.job_id ORDER BY a.job_id, a.attempt
            """
        ).rows
        func calls(_ name: String) throws -> [PostgresRow] { try attempts.filter { try $0.string("c") == name } }
        #expect(try calls("HTTP 503 then sent").map { try $0.int("http_status") } == [503, 200])
        #expect(try calls("body 500 then sent").map { try $0.string("outcome") } == ["retry", "sent"])
        #expect(try calls("timeout then sent").first?.string("message")?.hasPrefix("timeout:") == true)
        #expect(try calls("always 500: exhausted").map { try $0.int("attempt") } == [1, 2, 3])
        let throttled = try calls("HTTP 429 then sent")
        if throttled.count == 2 {
            // Retry-After: 1 was honoured even though the configured backoff is 0.1 s.
            let gap = try throttled[1].double("started")! - throttled[0].double("started")!
            #expect(gap >= 0.9, "retried after \(gap) s")
        }
        #expect(try calls("rejected number").isEmpty && calls("expired").isEmpty)

        // The sandbox saw exactly one accepted call per sent job, with the request id on the row.
        let report = try await sandbox.report()
        let sentRows = try rows.filter { try $0.string("state") == "sent" }
        #expect(report.accepted.count == sentRows.count)
        let acceptedByID = Dictionary(uniqueKeysWithValues: report.accepted.map { ($0.requestId, $0) })
        for row in sentRows {
            let accepted = acceptedByID[try row.requiredString("request_id")]
            #expect(accepted?.phoneNumber == (try row.string("phone_number")))
        }
        #expect(!report.accepted.contains { $0.phoneNumber.contains("-") || $0.phoneNumber == "13800000003" })
        #expect(!report.accepted.contains { $0.phoneCountryCode == "+86" })
        #expect(report.requests == attempts.count, "every call the sandbox saw is in sms.attempts")

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("1,000 jobs, two daemons: each sent once, request ids written back, invalid rows rejected")
    func twoDaemonsThousandJobs() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, priority)
            SELECT (ARRAY['CHANNEL_LOGIN', 'CHANNEL_REGISTER', 'CHANNEL_VERIFY_MFA', 'CHANNEL_RESET_PASSWORD'])[1 + g % 4],
                   '139' || lpad(g::text, 8, '0'), g % 3
            FROM generate_series(1, 1000) g;
            """)
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code)
            SELECT 'CHANNEL_LOGIN', (ARRAY['12ab', '', '1390000000１', '+8613900000000', '1234567890123456789012345678901234567890'])[1 + g % 5],
                   CASE WHEN g % 7 = 0 THEN '0086' ELSE NULL END
            FROM generate_series(1, 50) g;
            """)
        let first = try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_CONCURRENCY": "16"])
        defer { Task { await first.stop() } }
        let second = try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_CONCURRENCY": "16"])
        defer { Task { await second.stop() } }
        let settled = await eventually(timeout: .seconds(120)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "first:\n\(first.output)\nsecond:\n\(second.output)")
        #expect(first.isRunning && second.isRunning)

        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 1000)
        #expect(counts["rejected"] == 50)
        let report = try await sandbox.report()
        #expect(report.accepted.count == 1000)
        #expect(report.requests == 1000, "no call was repeated and no rejected row was sent")
        #expect(Set(report.accepted.map { "\($0.phoneNumber)|\($0.channel)" }).count == 1000)
        let accepted = Dictionary(uniqueKeysWithValues: report.accepted.map { ($0.requestId, $0) })
        let sent = try await database.query(
            "SELECT phone_number, channel, request_id, locked_by FROM sms.jobs WHERE state = 'sent'"
        ).rows
        var matched = 0
        for row in sent {
            if let call = accepted[try row.requiredString("request_id")],
                call.phoneNumber == (try row.string("phone_number")), call.channel == (try row.string("channel"))
            {
                matched += 1
            }
            #expect(try row.string("locked_by") == nil)
        }
        #expect(matched == 1000)
        // Both daemons took part and registered themselves.
        let claimers = try await database.query("SELECT count(DISTINCT worker)::int AS n FROM sms.attempts").first?.requiredInt(
            "n")
        #expect(claimers == 2)
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.workers").first?.requiredInt("n") == 2)

        first.signal(SIGTERM)
        second.signal(SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(20)) == 0)
        #expect(await second.waitForExit(timeout: .seconds(20)) == 0)
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.workers").first?.requiredInt("n") == 0)
    }

    /// Issue 27: the engine stops through a ServiceGroup, one service at a time in reverse order. With
    /// the database refusing writes the drain and the writer run out their limits; the whole stop must
    /// still end inside systemd's TimeoutStopSec (30 s), and what the writer could not write is settled
    /// by the rescue once the database takes writes again.
    @Test("SIGTERM while the database refuses writes: the stop ends within TimeoutStopSec (30 s), exit 0, nothing lost")
    func gracefulShutdownWhileTheDatabaseRefusesWrites() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "300"])
        defer { Task { await sandbox.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '136' || lpad(g::text, 8, '0') FROM generate_series(1, 200) g
            """)
        let daemon = try startDaemon(
            database: database, sandbox: sandbox, extra: ["SMSD_CONCURRENCY": "20", "SMSD_LEASE_DURATION": "5"])
        defer { Task { await daemon.stop() } }
        let started = await eventually(timeout: .seconds(30)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 20 }
        #expect(started)
        let admin = try await PostgresConnection.connect(try TestEnvironment.adminURL)
        try await admin.query("ALTER DATABASE \(database.name) SET default_transaction_read_only = on")
        _ = try await admin.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'sms-dispatcher%'",
            [database.name])
        try await Task.sleep(for: .seconds(1))
        let stopping = ContinuousClock.now
        daemon.signal(SIGTERM)
        let status = await daemon.waitForExit(timeout: .seconds(45))
        let took = ContinuousClock.now - stopping
        print(
            String(
                format: "shutdown with the database refusing writes: exit %@ after %.1f s",
                "\(status.map(String.init) ?? "none")", took.seconds))
        #expect(status == 0, "\(daemon.output)")
        #expect(took < .seconds(30), "systemd would have killed it (TimeoutStopSec=30s): \(took)")
        try await admin.query("ALTER DATABASE \(database.name) RESET default_transaction_read_only")
        await admin.close()
        // What it could not write is the rescue's to settle once its leases have run out.
        try await Task.sleep(for: .seconds(6))
        _ = try await database.query("SELECT * FROM sms.rescue_expired_leases('at-least-once')")
        let counts = try await stateCounts(database)
        #expect(counts["running"] == nil, "\(counts)")
        // Every SMS the sandbox accepted is on a row that admits it (sent, or may have been delivered).
        let admitted =
            try await database.query(
                """
                SELECT count(*)::int AS n FROM sms.jobs
                WHERE state = 'sent' OR message LIKE '%may have been delivered%' OR (state = 'pending' AND uncertain)
                """
            ).first?.requiredInt("n") ?? 0
        #expect(try await sandbox.report().accepted.count <= admitted, "\(counts)")
    }

    @Test("SIGTERM under load: in-flight calls finish and are written, exit 0, nothing left running")
    func gracefulShutdownUnderLoad() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "400"])
        defer { Task { await sandbox.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '137' || lpad(g::text, 8, '0') FROM generate_series(1, 300) g
            """)
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_CONCURRENCY": "20"])
        defer { Task { await daemon.stop() } }
        let started = await eventually(timeout: .seconds(30)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 20 }
        #expect(started)
        daemon.signal(SIGTERM)
        let status = await daemon.waitForExit(timeout: .seconds(15))
        #expect(status == 0, "\(daemon.output)")
        let counts = try await stateCounts(database)
        #expect(counts["running"] == nil, "\(counts)")
        #expect((counts["sent"] ?? 0) + (counts["pending"] ?? 0) == 300)
        #expect((counts["pending"] ?? 0) > 0, "the shutdown should have stopped claiming before the queue drained")
        // Whatever the sandbox accepted is on a row as sent: no call was lost in the shutdown.
        #expect(try await sandbox.report().accepted.count == counts["sent"] ?? 0)
        // The writer finished its work before the daemon stopped, and says nothing was left.
        #expect(!daemon.output.contains("outcomes not written"), "\(daemon.output)")
    }

    @Test(
        "SIGTERM while calls wait for slots beyond the grace period: they are released unsent, none rescued as 'delivery unknown'"
    )
    func shutdownReleasesFarSlots() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        // 2 calls a second: 40 jobs get slots up to ~22 s away, beyond the 10 s grace.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '136' || lpad(g::text, 8, '0') FROM generate_series(1, 40) g
            """)
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "2", "SMSD_DELIVERY_POLICY": "at-most-once",
            ])
        defer { Task { await daemon.stop() } }
        #expect(await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) >= 2 })
        daemon.signal(SIGTERM)
        let status = await daemon.waitForExit(timeout: .seconds(25))
        #expect(status == 0, "\(daemon.output)")
        let counts = try await stateCounts(database)
        #expect(counts["running"] == nil && counts["failed"] == nil, "\(counts)")
        #expect(try await sandbox.report().accepted.count == counts["sent"] ?? 0, "every call made is on its row")
        let released =
            try await database.query(
                """
                SELECT count(*)::int AS n FROM sms.jobs
                WHERE state = 'pending' AND attempts = 0 AND message = 'released unsent at daemon shutdown'
                """
            ).first?.int("n") ?? 0
        #expect(released + (counts["sent"] ?? 0) == 40, "\(counts), released \(released)")
        #expect(released > 0, "slots lay beyond the grace period")
    }
}
