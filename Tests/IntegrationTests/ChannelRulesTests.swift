import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

@testable import SMSEngine

/// Issue 3's rules, through real daemons, PostgreSQL and the sandbox.
@Suite("Channel rules and throttling", .serialized)
struct ChannelRulesTests {
    @Test("two daemons, 200 jobs for 20 phones in one window: 20 calls, the rest superseded, no throttled answer")
    func coalescingAcrossTheCluster() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--window", "60"])
        defer { Task { await sandbox.stop() } }
        // 20 phones × 10 jobs, the +86 spelling mixed in: it is the same phone.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code)
            SELECT 'CHANNEL_LOGIN', '1360000' || lpad((g % 20)::text, 4, '0'), CASE WHEN g % 3 = 0 THEN '+86' END
            FROM generate_series(1, 200) g
            """)
        // A call the sandbox answers after the test default of 1 s (two cores shared by the whole
        // suite) is retried within the window, and the retry's throttled answer proves the first
        // went out: correct, but not what this test counts.
        let daemons = try (0..<2).map { _ in
            try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_GENAUTH_TIMEOUT": "5"])
        }
        defer { for daemon in daemons { Task { await daemon.stop() } } }
        let settled = await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemons.map(\.output))")
        let counts = try await stateCounts(database)
        #expect(counts["sent"] == 20)
        #expect(counts["superseded"] == 180)
        let report = try await sandbox.report()
        // Which jobs called twice for one phone, if any: a second job (the throttle failed) or the same
        // job again (a retry after an unanswered call).
        let calls =
            try await database.query(
                """
                SELECT string_agg(j.phone_key || ' job ' || a.job_id || ' attempt ' || a.attempt || ' ' || a.outcome
                                  || coalesce(' ' || a.message, '') || ' by ' || a.worker, '; ' ORDER BY a.started_at) AS calls
                FROM sms.attempts a JOIN sms.jobs j ON j.id = a.job_id
                WHERE j.phone_key IN (SELECT j2.phone_key FROM sms.attempts a2 JOIN sms.jobs j2 ON j2.id = a2.job_id
                                      GROUP BY j2.phone_key HAVING count(*) > 1)
                """
            ).first?.string("calls") ?? ""
        #expect(report.requests == 20, "\(calls)")
        #expect(report.answers["body-429"] == nil)
        // The one sent per phone is the newest; every superseded job names a newer job.
        let wrong = try await database.query(
            """
            SELECT count(*)::int AS n FROM sms.jobs s
            WHERE s.state = 'sent' AND EXISTS (SELECT 1 FROM sms.jobs n WHERE n.phone_key = s.phone_key AND n.id > s.id)
            """
        ).first?.requiredInt("n")
        #expect(wrong == 0)
        let unexplained = try await database.query(
            """
            SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'superseded' AND message !~ '^superseded by job [0-9]+'
            """
        ).first?.requiredInt("n")
        #expect(unexplained == 0)
    }

    @Test("without coalescing, a second job for a phone is deferred and sent right after the window")
    func deferralToTheWindowsEnd() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let window = 6.0
        let sandbox = try await SandboxProcess.start(["--window", "6"])
        defer { Task { await sandbox.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code)
            SELECT 'CHANNEL_REGISTER', '1350000' || lpad((g % 10)::text, 4, '0'), CASE WHEN g > 10 THEN '+86' END
            FROM generate_series(1, 20) g
            """)
        let extra = [
            "SMSD_THROTTLE_WINDOW": "6", "SMSD_CHANNELS_DEFAULTS_COALESCE": "false",
            "SMSD_LEASE_DURATION": "1.5", "SMSD_LEASE_RESCUE_INTERVAL": "0.5",
        ]
        let daemons = try (0..<2).map { _ in try startDaemon(database: database, sandbox: sandbox, extra: extra) }
        defer { for daemon in daemons { Task { await daemon.stop() } } }

        // While the second jobs wait, status shows them as deferred.
        _ = await eventually(timeout: .seconds(20)) {
            ((try? await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE deferrals > 0 AND state = 'pending'")
                .first?.requiredInt("n")) ?? 0) > 0
        }
        let sawDeferred = await eventually(timeout: .seconds(4)) {
            guard
                let result = try? await ChildProcess.run(
                    TestEnvironment.executable("sms-dispatcher"), ["status", "--json"],
                    environment: ["SMSD_DATABASE_URL": database.url]),
                let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
                let totals = object["totals"] as? [String: Int]
            else { return false }
            return (totals["deferred"] ?? 0) > 0
        }
        #expect(sawDeferred)
        let settled = await eventually(timeout: .seconds(40)) { (try? await unfinishedJobs(database)) == 0 }
        let left = try await database.query(
            """
            SELECT id, phone_key, state, deferrals, message, run_at - now() AS due_in FROM sms.jobs WHERE state <> 'sent' LIMIT 5
            """
        ).rows.map { $0.values }
        #expect(settled, "\(left) \(daemons.map(\.output))")
        #expect(try await stateCounts(database)["sent"] == 20)
        let report = try await sandbox.report()
        #expect(report.requests == 20, "\(report.answers)")
        #expect(report.answers["body-429"] == nil)
        let byPhone = Dictionary(grouping: report.accepted, by: \.phoneNumber)
        #expect(byPhone.count == 10)
        for (phone, sends) in byPhone {
            let times = sends.map(\.at).sorted()
            #expect(times.count == 2)
            guard times.count == 2 else { continue }
            let gap = times[1] - times[0]
            #expect(gap >= window, "\(phone): second SMS after \(gap) s")
            #expect(gap < window + 2.5, "\(phone): deferred job sent \(gap - window) s after the window")
        }
        let deferrals = try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE deferrals > 0").first?
            .requiredInt("n")
        #expect(deferrals == 10)
    }

    @Test("jobs past expires_at or their channel's TTL, or that would outlive the window, expire unsent")
    func expiry() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--window", "30"])
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_THROTTLE_WINDOW": "30", "SMSD_CHANNELS_DEFAULTS_COALESCE": "false",
                "SMSD_CHANNELS_CHANNEL_LOGIN_TTL": "120",
            ])
        defer { Task { await daemon.stop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, created_at, expires_at, metadata) VALUES
            ('CHANNEL_LOGIN', '13400000001', now() - interval '3 minutes', NULL, '{"case": "older than the TTL"}'),
            ('CHANNEL_REGISTER', '13400000002', now() - interval '11 minutes', NULL, '{"case": "older than the default TTL"}'),
            ('CHANNEL_REGISTER', '13400000003', now(), now() - interval '1 second', '{"case": "past expires_at"}'),
            ('CHANNEL_BIND_PHONE', '13400000004', now(), NULL, '{"case": "sent"}')
            """)
        let sent = await eventually(timeout: .seconds(20)) { ((try? await stateCounts(database))?["sent"] ?? 0) == 1 }
        #expect(sent)
        // Same phone and channel inside the 30 s window, due to expire in 5 s: it can never be sent in time.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, expires_at, metadata)
            VALUES ('CHANNEL_BIND_PHONE', '13400000004', now() + interval '5 seconds', '{"case": "window outlives it"}')
            """)
        let settled = await eventually(timeout: .seconds(20)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemon.output)")
        let rows = try await database.query("SELECT metadata->>'case' AS c, state, message FROM sms.jobs ORDER BY id").rows
        var states: [String: (String?, String?)] = [:]
        for row in rows { states[try row.requiredString("c")] = (try row.string("state"), try row.string("message")) }
        #expect(states["older than the TTL"]?.0 == "expired")
        #expect(states["older than the TTL"]?.1?.contains("TTL of 120 s") == true)
        #expect(states["older than the default TTL"]?.0 == "expired")
        #expect(states["older than the default TTL"]?.1?.contains("TTL of 600 s") == true)
        #expect(states["past expires_at"]?.0 == "expired")
        #expect(states["window outlives it"]?.0 == "expired")
        #expect(
            states["window outlives it"]?.1?.contains(
                "(one SMS per phone per channel every 30 s (throttle.window)), which is after its deadline") == true,
            "\(states["window outlives it"]?.1 ?? "")")
        let report = try await sandbox.report()
        #expect(report.requests == 1)
        #expect(report.accepted.map(\.phoneNumber) == ["13400000004"])
    }

    @Test("disabled channels, countries, per-phone caps and channel priorities")
    func rules() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--international"])
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_CHANNELS_CHANNEL_DELETE_ACCOUNT_ENABLED": "false",
                "SMSD_COUNTRIES_INTERNATIONAL": "true",
                "SMSD_COUNTRIES_ALLOW": "+852,+1",
                "SMSD_CAPS_PER_PHONE_HOUR": "3",
                "SMSD_CHANNELS_CHANNEL_VERIFY_MFA_PRIORITY": "10",
            ])
        defer { Task { await daemon.stop() } }
        // The daemon publishes channel priorities at start.
        let published = await eventually(timeout: .seconds(15)) {
            ((try? await database.query(
                "SELECT default_priority AS p FROM sms.channel_settings WHERE channel = 'CHANNEL_VERIFY_MFA'"
            )
            .first?.int("p")) ?? 0) == 10
        }
        #expect(published)
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code, metadata) VALUES
            ('CHANNEL_DELETE_ACCOUNT', '13300000001', NULL, '{"case": "disabled"}'),
            ('CHANNEL_LOGIN', '91234567', '+852', '{"case": "allowed country"}'),
            ('CHANNEL_LOGIN', '2079460000', '+44', '{"case": "country not allowed"}'),
            ('CHANNEL_VERIFY_MFA', '13300000002', NULL, '{"case": "priority"}')
            """)
        let priority = try await database.query("SELECT priority FROM sms.jobs WHERE metadata->>'case' = 'priority'").first?.int(
            "priority")
        #expect(priority == 10)
        // One phone, five channels, a cap of three an hour.
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, metadata)
            SELECT c, '13300000009', '{"case": "cap"}'
            FROM unnest(ARRAY['CHANNEL_LOGIN', 'CHANNEL_REGISTER', 'CHANNEL_RESET_PASSWORD', 'CHANNEL_BIND_PHONE', 'CHANNEL_BIND_MFA']) c
            """)
        let settled = await eventually(timeout: .seconds(20)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled, "\(daemon.output)")
        let rows = try await database.query("SELECT metadata->>'case' AS c, state, message FROM sms.jobs ORDER BY id").rows
        func find(_ name: String) throws -> [(state: String?, message: String?)] {
            try rows.filter { try $0.string("c") == name }.map { (try $0.string("state"), try $0.string("message")) }
        }
        #expect(try find("disabled").first?.state == "rejected")
        #expect(try find("disabled").first?.message?.contains("channels.CHANNEL_DELETE_ACCOUNT.enabled = false") == true)
        #expect(try find("allowed country").first?.state == "sent")
        #expect(try find("country not allowed").first?.state == "rejected")
        #expect(try find("country not allowed").first?.message?.contains("countries.allow") == true)
        #expect(try find("priority").first?.state == "sent")
        let cap = try find("cap")
        #expect(cap.filter { $0.state == "sent" }.count == 3)
        #expect(cap.filter { $0.state == "rejected" }.count == 2)
        #expect(cap.filter { $0.message?.contains("caps.per_phone_hour = 3") == true }.count == 2)
        let report = try await sandbox.report()
        #expect(!report.accepted.contains { $0.phoneCountryCode == "+44" || $0.channel == "CHANNEL_DELETE_ACCOUNT" })
        #expect(report.accepted.filter { $0.phoneNumber == "13300000009" }.count == 3)
    }

    @Test("a burst of 5,000 jobs never exceeds the cluster's rate limit, measured at the sandbox")
    func rateLimit() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let limit = 500
        let daemons = try (0..<2).map { _ in
            try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": String(limit)])
        }
        defer { for daemon in daemons { Task { await daemon.stop() } } }
        // Both daemons must know of each other (heartbeats every 0.5 s) before the burst.
        _ = await eventually(timeout: .seconds(10)) {
            ((try? await database.query("SELECT count(*)::int AS n FROM sms.workers").first?.requiredInt("n")) ?? 0) == 2
        }
        try await Task.sleep(for: .seconds(1.2))
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '131' || lpad(g::text, 8, '0') FROM generate_series(1, 5000) g
            """)
        let settled = await eventually(timeout: .seconds(60)) { (try? await unfinishedJobs(database)) == 0 }
        #expect(settled)
        #expect(try await stateCounts(database)["sent"] == 5000)
        let report = try await sandbox.report()
        let busiest = report.perSecond.values.max() ?? 0
        #expect(busiest <= limit, "per second at the sandbox: \(report.perSecond.sorted { $0.key < $1.key })")
        #expect(busiest >= limit / 2, "the limit should be used, not starved: \(report.perSecond)")
    }
}
