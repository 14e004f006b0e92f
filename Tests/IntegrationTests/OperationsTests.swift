import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// Issue 5: what operators run and watch: commands, retention, metrics, logs.
@Suite("Operations")
struct OperationsTests {
    let binary = TestEnvironment.executable("sms-dispatcher")

    @Test func requeueCancelAndPurge() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, message, finished_at, metadata) VALUES
            ('CHANNEL_LOGIN', '13800000001', 'failed', 5, 'attempts exhausted', now() - interval '1 hour', '{"n": 1}'),
            ('CHANNEL_REGISTER', '13800000002', 'expired', 0, 'expired', now() - interval '1 hour', '{"n": 2}'),
            ('CHANNEL_LOGIN', '13800000003', 'pending', 0, NULL, NULL, '{"n": 3}'),
            ('CHANNEL_LOGIN', '13800000004', 'sent', 1, '', now() - interval '8 days', '{"n": 4}'),
            ('CHANNEL_LOGIN', '13800000005', 'sent', 1, '', now() - interval '1 day', '{"n": 5}')
            """)
        try await database.query(
            """
            INSERT INTO sms.attempts (job_id, attempt, worker, started_at, finished_at, outcome)
            SELECT id, 1, 'w', finished_at, finished_at, 'sent' FROM sms.jobs WHERE state = 'sent'
            """)
        func id(_ n: Int) async throws -> Int {
            try await database.query("SELECT id FROM sms.jobs WHERE metadata->>'n' = $1", [String(n)]).first!.requiredInt("id")
        }
        let environment = ["SMSD_DATABASE_URL": database.url]
        let id1 = try await id(1)
        let id3 = try await id(3)
        let id4 = try await id(4)

        let dry = try await ChildProcess.run(binary, ["requeue", "--dry-run"], environment: environment)
        #expect(dry.status == 0 && dry.output.contains("would requeue 2 job(s)"), "\(dry.output)")
        #expect(try await stateCounts(database)["failed"] == 1)
        let requeued = try await ChildProcess.run(
            binary, ["requeue", "--state", "failed", "--channel", "CHANNEL_LOGIN"], environment: environment)
        #expect(requeued.status == 0 && requeued.output.contains("requeued 1 job(s): \(id1)"), "\(requeued.output)")
        let row = try #require(
            try await database.query("SELECT state, attempts, message FROM sms.jobs WHERE id = $1", [String(id1)]).first)
        #expect(try row.string("state") == "pending")
        #expect(try row.int("attempts") == 0)
        #expect(try row.string("message")?.contains("requeued by an operator (was failed: attempts exhausted)") == true)
        #expect(try await stateCounts(database)["expired"] == 1, "other states and channels untouched")

        let cancel = try await ChildProcess.run(
            binary, ["cancel", String(id3), String(id4), "999999"],
            environment: environment)
        #expect(cancel.status == 1, "some could not be cancelled")
        #expect(cancel.output.contains("\(id3): cancelled"))
        #expect(cancel.output.contains("\(id4): not cancelled: already sent"))
        #expect(cancel.output.contains("999999: no such job"))

        let purge = try await ChildProcess.run(binary, ["purge", "--older-than", "7d"], environment: environment)
        #expect(purge.status == 0 && purge.output.contains("deleted 1 finished job(s)"), "\(purge.output)")
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE metadata->>'n' = '4'").first?.requiredInt("n")
                == 0)
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.attempts").first?.requiredInt("n") == 1,
            "the purged job's attempts went with it")
        let badDuration = try await ChildProcess.run(binary, ["purge", "--older-than", "soon"], environment: environment)
        #expect(badDuration.status == 64)
    }

    @Test func retentionRunsInTheDaemon() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, finished_at)
            SELECT 'CHANNEL_LOGIN', '138' || lpad(g::text, 8, '0'), 'sent',
                   CASE WHEN g <= 250 THEN now() - interval '3 days' ELSE now() - interval '1 hour' END
            FROM generate_series(1, 300) g
            """)
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_RETENTION_MAX_AGE_DAYS": "2", "SMSD_RETENTION_INTERVAL": "1", "SMSD_RETENTION_BATCH_SIZE": "40",
            ])
        defer { Task { await daemon.stop() } }
        let purged = await eventually(timeout: .seconds(20)) {
            ((try? await database.query("SELECT count(*)::int AS n FROM sms.jobs").first?.requiredInt("n")) ?? 0) == 50
        }
        #expect(purged, "\(daemon.output)")
        // The log line follows the delete's commit and reaches us through a pipe: it may trail the count.
        #expect(
            await eventually(timeout: .seconds(5)) { daemon.output.contains("retention deleted finished jobs") },
            "\(daemon.output)")
    }

    @Test("the Prometheus endpoint serves counters and histograms; logs mask numbers and keep secrets out")
    func metricsAndLogs() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let port = try freeLocalPort()
        let secret = "app-secret-\(UUID().uuidString)"
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_METRICS_LISTEN": "127.0.0.1:\(port)", "SMSD_LOG_LEVEL": "debug", "SMSD_GENAUTH_APP_SECRET": secret,
                "SMSD_HEARTBEAT_INTERVAL": "0.3",
            ])
        defer { Task { await daemon.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number) VALUES
            ('CHANNEL_LOGIN', '13800000001'), ('CHANNEL_LOGIN', '13800000002'), ('CHANNEL_LOGIN', '12-34'),
            ('CHANNEL_LOGIN', '17000001234')
            """)
        #expect(await eventually(timeout: .seconds(20)) { (try? await unfinishedJobs(database)) == 0 })
        var text = ""
        _ = await eventually(timeout: .seconds(10)) {
            text = (try? await HTTP.request("GET", "http://127.0.0.1:\(port)/metrics").body) ?? ""
            return text.contains(#"smsd_jobs_outcomes_total{outcome="sent"} 2"#)
        }
        #expect(text.contains("smsd_jobs_claimed_total 4"), "\(text)")
        #expect(text.contains(#"smsd_jobs_outcomes_total{outcome="sent"} 2"#))
        #expect(text.contains(#"smsd_jobs_outcomes_total{outcome="rejected"} 1"#))
        #expect(text.contains(#"smsd_jobs_outcomes_total{outcome="failed"} 1"#))
        #expect(text.contains(#"smsd_api_calls_total{result="ok"} 2"#))
        #expect(text.contains(#"smsd_api_calls_total{result="body_4xx"} 1"#))
        #expect(text.contains("smsd_api_latency_seconds_bucket"))
        #expect(text.contains("smsd_api_calls_in_flight"))
        #expect(text.contains("smsd_queue_due_jobs"))
        #expect(text.contains("smsd_breaker_state"))
        #expect(!text.contains("13800000001"))

        daemon.signal(SIGTERM)
        _ = await daemon.waitForExit(timeout: .seconds(20))
        #expect(daemon.output.contains("138****0001"), "per-job lines at debug, masked: \(daemon.output)")
        #expect(!daemon.output.contains("13800000001"))
        #expect(!daemon.output.contains(secret))
        let check = try await ChildProcess.run(
            binary, ["check-config"],
            environment: [
                "SMSD_GENAUTH_HOST": sandbox.baseURL, "SMSD_GENAUTH_APP_ID": "a", "SMSD_GENAUTH_APP_SECRET": secret,
            ])
        #expect(check.status == 0 && !check.output.contains(secret))
    }
}
