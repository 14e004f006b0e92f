import Foundation
import PostgresClient
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// Issue 13, part 3: `pause`/`resume` obeyed by running daemons without a restart.
@Suite("Pause and resume")
struct PauseTests {
    let binary = TestEnvironment.executable("sms-dispatcher")

    func sentCount(_ database: TestDatabase, channel: String) async throws -> Int {
        try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'sent' AND channel = $1", [channel])
            .first!.requiredInt("n")
    }

    @Test(
        "a paused channel's jobs wait (saying so) while others go; status, queue_stats, the log and the metric show it; resume sends them within 2 s"
    )
    func pauseOneChannel() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let port = try freeLocalPort()
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_METRICS_LISTEN": "127.0.0.1:\(port)"])
        defer { Task { await daemon.stop() } }
        let environment = ["SMSD_DATABASE_URL": database.url]
        #expect(await eventually(timeout: .seconds(20)) { daemon.output.contains("dispatcher started") }, "\(daemon.output)")

        let paused = try await ChildProcess.run(
            binary, ["pause", "--channel", "CHANNEL_LOGIN", "--reason", "provider maintenance"],
            environment: environment)
        #expect(paused.status == 0, "\(paused.output)")
        #expect(paused.output.contains("paused CHANNEL_LOGIN until resumed"), "\(paused.output)")
        try await database.execute(
            """
            INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13800000031'), ('CHANNEL_LOGIN', '13800000032'),
                ('CHANNEL_REGISTER', '13800000033')
            """)
        #expect(await eventually(timeout: .seconds(15)) { (try? await sentCount(database, channel: "CHANNEL_REGISTER")) == 1 })
        // The daemon heard of it (NOTIFY) and logs it; the metric says so.
        #expect(await eventually(timeout: .seconds(2)) { daemon.output.contains("paused: CHANNEL_LOGIN by") }, "\(daemon.output)")
        var metrics = ""
        _ = await eventually(timeout: .seconds(5)) {
            metrics = (try? await HTTP.request("GET", "http://127.0.0.1:\(port)/metrics").body) ?? ""
            return metrics.contains(#"smsd_channel_paused{channel="CHANNEL_LOGIN"} 1"#)
        }
        #expect(
            metrics.contains(#"smsd_channel_paused{channel="CHANNEL_LOGIN"} 1"#),
            "\(metrics.split(separator: "\n").filter { $0.contains("paused") })")
        #expect(metrics.contains(#"smsd_channel_paused{channel="CHANNEL_REGISTER"} 0"#))
        try await Task.sleep(for: .seconds(2))
        let waiting = try await database.query("SELECT state, message FROM sms.jobs WHERE channel = 'CHANNEL_LOGIN'").rows
        #expect(waiting.count == 2)
        for row in waiting {
            #expect(try row.string("state") == "pending")
            let message = try row.string("message") ?? ""
            #expect(
                message.hasPrefix("paused: CHANNEL_LOGIN paused by") && message.contains("provider maintenance"), "\(message)")
        }
        let stats = try await database.query("SELECT DISTINCT channel, paused FROM sms.queue_stats ORDER BY channel").rows
        #expect(
            try stats.map { "\(try $0.requiredString("channel"))=\(try $0.bool("paused") ?? false)" }
                == ["CHANNEL_LOGIN=true", "CHANNEL_REGISTER=false"])
        let status = try await ChildProcess.run(binary, ["status"], environment: environment)
        #expect(status.output.contains("provider maintenance") && status.output.contains("CHANNEL_LOGIN"), "\(status.output)")
        let json = try await ChildProcess.run(binary, ["status", "--json"], environment: environment)
        #expect(json.output.contains("\"scope\" : \"CHANNEL_LOGIN\""), "\(json.output)")
        let controls = try await database.query("SELECT paused_by, reason FROM sms.controls").rows
        #expect(try controls.first?.string("paused_by") == "postgres", "who: the database role")

        let resumed = try await ChildProcess.run(binary, ["resume", "--channel", "CHANNEL_LOGIN"], environment: environment)
        #expect(resumed.status == 0, "\(resumed.output)")
        let start = ContinuousClock.now
        let sent = await eventually(timeout: .seconds(10)) { (try? await sentCount(database, channel: "CHANNEL_LOGIN")) == 2 }
        let took = ContinuousClock.now - start
        #expect(sent, "\(daemon.output)")
        #expect(took < .seconds(2), "resumed jobs go within 2 s (took \(took))")
        #expect(await eventually(timeout: .seconds(2)) { daemon.output.contains("resumed: CHANNEL_LOGIN") })
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.controls").first?.int("n") == 0)
    }

    @Test("a timed pause of all channels ends by itself; a paused job's TTL still expires it")
    func timedPauseAndTTL() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_LEASE_RESCUE_INTERVAL": "0.5"])
        defer { Task { await daemon.stop() } }
        let environment = ["SMSD_DATABASE_URL": database.url]
        #expect(await eventually(timeout: .seconds(20)) { daemon.output.contains("dispatcher started") }, "\(daemon.output)")
        let before = ContinuousClock.now
        let paused = try await ChildProcess.run(
            binary, ["pause", "--for", "8s", "--reason", "incident 12"], environment: environment)
        #expect(paused.status == 0, "\(paused.output)")
        try await database.execute(
            """
            INSERT INTO sms.jobs (channel, phone_number, expires_at) VALUES ('CHANNEL_LOGIN', '13800000041', NULL),
                ('CHANNEL_BIND_MFA', '13800000042', now() + interval '1 second')
            """)
        // The rescuer (every 0.5 s here) expires the job whose expires_at passed during the pause.
        let expiredInTime = await eventually(timeout: .seconds(6)) { (try? await stateCounts(database))?["expired"] == 1 }
        #expect(expiredInTime, "\(daemon.output)")
        let during = try await stateCounts(database)
        if ContinuousClock.now - before < .seconds(7.5) {
            #expect(during["sent", default: 0] == 0, "nothing goes out during the pause: \(during)")
        }
        let expired = try await database.query("SELECT message FROM sms.jobs WHERE state = 'expired'").first
        #expect(try expired?.string("message") == "expires_at passed while its channel was paused")
        // The pause ends by itself after 8 s; the other job is then sent.
        #expect(await eventually(timeout: .seconds(20)) { (try? await stateCounts(database))?["sent"] == 1 }, "\(daemon.output)")
        #expect(ContinuousClock.now - before >= .seconds(8), "not before the pause's end")
        #expect(try await sandbox.report().accepted.map(\.phoneNumber) == ["13800000041"])
    }

    @Test("pause and resume refuse bad input with usage errors")
    func badInput() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let environment = ["SMSD_DATABASE_URL": database.url]
        for arguments in [
            ["pause", "--channel", "CHANNEL_SPAM"], ["pause", "--for", "0s"], ["pause", "--for", "soon"],
            ["resume", "--channel", "nope"],
        ] {
            let result = try await ChildProcess.run(binary, arguments, environment: environment)
            #expect(result.status == 64, "\(arguments): \(result.output)")
        }
        let notPaused = try await ChildProcess.run(binary, ["resume"], environment: environment)
        #expect(notPaused.status == 0 && notPaused.output.contains("was not paused"), "\(notPaused.output)")
        // A channel's own resume under a pause of all channels says what still holds it.
        _ = try await ChildProcess.run(binary, ["pause"], environment: environment)
        _ = try await ChildProcess.run(binary, ["pause", "--channel", "CHANNEL_LOGIN"], environment: environment)
        let partial = try await ChildProcess.run(binary, ["resume", "--channel", "CHANNEL_LOGIN"], environment: environment)
        #expect(partial.output.contains("still paused by the pause of all channels"), "\(partial.output)")
    }

    @Test(
        "a job claimed before the pause is not sent after it: the throttle answers `paused`; an uncertain rescued job is not expired under a pause"
    )
    func pauseAfterClaim() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.execute("INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13800000051')")
        let claimed = try await database.query("SELECT id, lease_token, phone_key, channel FROM sms.claim_jobs('w1', 10, 30)")
            .rows
        #expect(claimed.count == 1)
        let row = try #require(claimed.first)
        let (id, token, key) = (
            try row.requiredInt("id"), try row.requiredInt("lease_token"), try row.requiredString("phone_key")
        )
        try await database.execute("SELECT sms.pause('CHANNEL_LOGIN', 'late pause')")
        let verdict = try await database.query(
            """
            SELECT r_verdict, r_detail FROM sms.reserve_sends(ARRAY[\(id)]::bigint[], ARRAY[\(token)]::bigint[],
                ARRAY['\(key)'], ARRAY['CHANNEL_LOGIN'], 60, 0, 0, 0)
            """
        ).rows
        #expect(try verdict.first?.string("r_verdict") == "paused")
        #expect(try verdict.first?.string("r_detail")?.contains("late pause") == true)
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.throttle").first?.int("n") == 0,
            "no phone window taken for a job that is not sent")
        #expect(try await database.query("SELECT sending_at FROM sms.jobs").first?.isNull("sending_at") == true)

        // A job the rescue left uncertain (its holder's answer may still come) keeps its chance.
        try await database.execute(
            """
            INSERT INTO sms.jobs (channel, phone_number, expires_at) VALUES ('CHANNEL_LOGIN', '13800000052', now() - interval '1 s');
            UPDATE sms.jobs SET uncertain = true, lease_token = 99 WHERE phone_number = '13800000052';
            INSERT INTO sms.jobs (channel, phone_number, expires_at) VALUES ('CHANNEL_LOGIN', '13800000053', now() - interval '1 s');
            """)
        #expect(try await database.query("SELECT sms.expire_paused_jobs(100) AS n").first?.int("n") == 1)
        let states = try await database.query(
            "SELECT phone_number, state FROM sms.jobs WHERE phone_number IN ('13800000052', '13800000053') ORDER BY 1"
        ).rows
        #expect(try states.map { try $0.requiredString("state") } == ["pending", "expired"])
    }

    @Test("a call granted a slot seconds away is held back at its slot by a pause that came meanwhile")
    func pauseBeforeAFarSlot() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        // 2 calls a second (scheduled at 90%: 0.56 s apart): ten jobs get slots up to 5 s away.
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: ["SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "2"])
        defer { Task { await daemon.stop() } }
        #expect(await eventually(timeout: .seconds(20)) { daemon.output.contains("dispatcher started") }, "\(daemon.output)")
        try await database.execute(
            """
            INSERT INTO sms.jobs (channel, phone_number) SELECT 'CHANNEL_LOGIN', '1380000' || lpad(g::text, 4, '0') FROM generate_series(1, 10) g
            """)
        #expect(await eventually(timeout: .seconds(10)) { ((try? await sandbox.report().accepted.count) ?? 0) >= 1 })
        let paused = try await ChildProcess.run(
            binary, ["pause", "--channel", "CHANNEL_LOGIN"], environment: ["SMSD_DATABASE_URL": database.url])
        #expect(paused.status == 0, "\(paused.output)")
        try await Task.sleep(for: .seconds(2))
        let afterTwo = try await sandbox.report().accepted.count
        try await Task.sleep(for: .seconds(4))
        let afterSix = try await sandbox.report().accepted.count
        #expect(afterSix == afterTwo, "nothing goes out more than 2 s after the pause (\(afterTwo) then \(afterSix))")
        #expect(afterSix < 10, "the far slots were held back: \(afterSix) sent")
        let held =
            try await database.query(
                """
                SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'pending' AND message LIKE 'paused: CHANNEL_LOGIN paused by %'
                """
            ).first?.int("n") ?? 0
        #expect(held == 10 - afterSix, "every job not sent waits, saying why")
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.attempts").first?.int("n") == afterSix,
            "no attempt used by the held")
        _ = try await ChildProcess.run(binary, ["resume"], environment: ["SMSD_DATABASE_URL": database.url])
        #expect(await eventually(timeout: .seconds(30)) { (try? await stateCounts(database))?["sent"] == 10 }, "\(daemon.output)")
    }
}
