import Foundation
import PostgresClient
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// Issue 13, part 2: results back to the producer: `sms.enqueue`, `NOTIFY sms_job_events`, and
/// `sms-dispatcher enqueue --wait`, against real processes.
@Suite("Results back to producers")
struct ProducerResultsTests {
    let binary = TestEnvironment.executable("sms-dispatcher")

    /// Every `<id>:<state>` a listener has heard so far (waits up to `timeout` for more).
    static func drain(
        _ connection: PostgresConnection, into heard: inout [(id: Int64, state: String)],
        payloads: inout [String], timeout: Duration
    ) async throws {
        for note in try await connection.waitForNotifications(timeout: timeout) where note.channel == "sms_job_events" {
            payloads.append(note.payload)
            for item in note.payload.split(separator: ",") {
                let parts = item.split(separator: ":")
                if parts.count == 2, let id = Int64(parts[0]) { heard.append((id, String(parts[1]))) }
            }
        }
    }

    @Test("sms.enqueue: the id, producer columns only, a repeated idempotency key gives the first id")
    func enqueueFunction() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        try await database.execute("INSERT INTO sms.channel_settings (channel, default_priority) VALUES ('CHANNEL_LOGIN', 7)")
        let first = try await database.query(
            """
            SELECT sms.enqueue('CHANNEL_LOGIN', '13800138000', idempotency_key => 'order-1',
                               metadata => '{"order": 1}', client_ip => '203.0.113.9', user_ref => 'user-42') AS id
            """
        ).first!.requiredInt("id")
        let again = try await database.query(
            """
            SELECT sms.enqueue('CHANNEL_REGISTER', '13900139000', idempotency_key => 'order-1') AS id
            """
        ).first!.requiredInt("id")
        #expect(again == first, "a repeated idempotency key returns the first job's id")
        let other = try await database.query("SELECT sms.enqueue('CHANNEL_LOGIN', '13800138001', '+86', 3::smallint) AS id")
            .first!.requiredInt("id")
        #expect(other != first)
        let rows = try await database.query(
            """
            SELECT id, channel, phone_number, priority, state, metadata->>'order' AS o, host(client_ip) AS ip, user_ref
            FROM sms.jobs ORDER BY id
            """
        ).rows
        #expect(rows.count == 2, "the repeat inserted nothing")
        #expect(try rows[0].string("channel") == "CHANNEL_LOGIN")
        #expect(try rows[0].int("priority") == 7, "priority 0 takes the channel's default, as a plain INSERT does")
        #expect(try rows[0].string("state") == "pending")
        #expect(try rows[0].string("o") == "1")
        #expect(try rows[0].string("ip") == "203.0.113.9")
        #expect(try rows[0].string("user_ref") == "user-42")
        #expect(try rows[1].int("priority") == 3)
        // A plain INSERT keeps working beside it.
        let plain = try await database.query(
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '1') RETURNING id")
        #expect(try plain.first?.int("id") != nil)
    }

    @Test("sms.announce cuts a big batch into payloads under PostgreSQL's 8000-byte limit, losing none")
    func announceChunks() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let listener = try await database.connect()
        defer { Task { await listener.close() } }
        try await listener.listen("sms_job_events")
        let count = 3000
        let notified = try await database.query(
            """
            SELECT sms.announce(array_agg(1000000000000000 + g ORDER BY g), array_agg(CASE WHEN g % 2 = 0 THEN 'superseded' ELSE 'sent' END ORDER BY g)) AS n
            FROM generate_series(1, \(count)) g
            """
        ).first!.requiredInt("n")
        var heard: [(id: Int64, state: String)] = []
        var payloads: [String] = []
        for _ in 0..<20 where heard.count < count {
            try await Self.drain(listener, into: &heard, payloads: &payloads, timeout: .milliseconds(500))
        }
        #expect(heard.count == count, "every id announced once")
        #expect(Set(heard.map(\.id)).count == count)
        #expect(payloads.count == notified, "sms.announce returns how many notifications it sent")
        #expect(payloads.count > 1, "a 3000-job batch does not fit one payload")
        #expect(payloads.allSatisfy { $0.utf8.count < 8000 }, "\(payloads.map(\.utf8.count))")
        #expect(heard.allSatisfy { ($0.id % 2 == 0) == ($0.state == "superseded") }, "each id keeps its own state")
        // Nothing for an empty batch.
        #expect(try await database.query("SELECT sms.announce('{}'::bigint[], '{}'::text[]) AS n").first?.int("n") == 0)
    }

    @Test("a running daemon announces sent, rejected, superseded, deferred and cancelled jobs, each as its row says")
    func eventsFromDaemon() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--window", "6"])
        defer { Task { await sandbox.stop() } }
        let listener = try await database.connect()
        defer { Task { await listener.close() } }
        try await listener.listen("sms_job_events")
        // Before the daemon: an older and a newer job for one phone and channel (the older is superseded).
        let older = try await database.query("SELECT sms.enqueue('CHANNEL_LOGIN', '13800000010') AS id").first!.requiredInt("id")
        let newer = try await database.query("SELECT sms.enqueue('CHANNEL_LOGIN', '13800000010') AS id").first!.requiredInt("id")
        let bad = try await database.query("SELECT sms.enqueue('CHANNEL_LOGIN', '138-bad') AS id").first!.requiredInt("id")
        // A short window, and a lease and rescue short enough that a crashed call's retry could still
        // be proven within it (the configuration refuses less: `Dispatcher.Configuration.inconsistency`).
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_THROTTLE_WINDOW": "6", "SMSD_LEASE_DURATION": "1.5", "SMSD_LEASE_RESCUE_INTERVAL": "0.5",
            ])
        defer { Task { await daemon.stop() } }
        var heard: [(id: Int64, state: String)] = []
        var payloads: [String] = []
        func heardState(_ id: Int, _ state: String) -> Bool { heard.contains { $0.id == Int64(id) && $0.state == state } }
        for _ in 0..<100 where !(heardState(newer, "sent") && heardState(bad, "rejected")) {
            try await Self.drain(listener, into: &heard, payloads: &payloads, timeout: .milliseconds(200))
        }
        #expect(heardState(newer, "sent"), "\(heard)\n\(daemon.output)")
        #expect(heardState(older, "superseded"), "\(heard)")
        #expect(heardState(bad, "rejected"), "\(heard)")
        // The same phone and channel again while its 6 s window is open: deferred (announced as
        // pending, the row says why and until when), then sent when the window closes.
        let deferred = try await database.query("SELECT sms.enqueue('CHANNEL_LOGIN', '13800000010') AS id").first!.requiredInt(
            "id")
        for _ in 0..<100 where !heardState(deferred, "sent") {
            try await Self.drain(listener, into: &heard, payloads: &payloads, timeout: .milliseconds(200))
            if heardState(deferred, "pending"), !heard.contains(where: { $0.id == Int64(deferred) && $0.state == "sent" }) {
                let row = try await database.query(
                    "SELECT state, deferrals, message FROM sms.jobs WHERE id = $1", [String(deferred)]
                ).first!
                if try row.string("state") == "pending" {
                    let message = try row.string("message") ?? ""
                    let deferrals = try row.int("deferrals") ?? 0
                    #expect(deferrals >= 1, "announced pending after a deferral: \(message)")
                }
            }
        }
        #expect(heardState(deferred, "pending"), "a deferral is announced: \(heard)")
        #expect(heardState(deferred, "sent"), "\(heard)\n\(daemon.output)")
        // Every terminal announcement matches its row.
        for (id, state) in heard where state != "pending" {
            let row = try await database.query("SELECT state FROM sms.jobs WHERE id = $1", [String(id)]).first
            #expect(try row?.string("state") == state, "job \(id) announced \(state)")
        }
        #expect(payloads.allSatisfy { $0.utf8.count < 8000 })
        // An operator's cancel is announced too.
        let waiting = try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, run_at) VALUES ('CHANNEL_LOGIN', '13800000011', now() + interval '1 hour') RETURNING id
            """
        ).first!.requiredInt("id")
        let cancel = try await ChildProcess.run(
            binary, ["cancel", String(waiting)], environment: ["SMSD_DATABASE_URL": database.url])
        #expect(cancel.status == 0, "\(cancel.output)")
        for _ in 0..<20 where !heardState(waiting, "cancelled") {
            try await Self.drain(listener, into: &heard, payloads: &payloads, timeout: .milliseconds(200))
        }
        #expect(heardState(waiting, "cancelled"), "\(heard)")
    }

    @Test("enqueue --wait: exit 0 when sent, 1 when it ended unsent, 75 when the timeout passed first")
    func enqueueWait() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let environment = ["SMSD_DATABASE_URL": database.url]
        // No daemon yet: the timeout passes, the job stays (it is not cancelled).
        let early = try await ChildProcess.run(
            binary,
            [
                "enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "13800000020",
                "--wait", "--timeout", "1",
            ], environment: environment)
        #expect(early.status == 75, "\(early.output)")
        #expect(early.output.contains("timed out"), "\(early.output)")
        #expect(try await stateCounts(database)["pending"] == 1)

        let daemon = try startDaemon(database: database, sandbox: sandbox)
        defer { Task { await daemon.stop() } }
        let sent = try await ChildProcess.run(
            binary,
            [
                "enqueue", "--channel", "CHANNEL_REGISTER", "--phone", "13800000021",
                "--wait", "--timeout", "30",
            ], environment: environment)
        #expect(sent.status == 0, "\(sent.output)\n\(daemon.output)")
        #expect(sent.output.contains("sent: statusCode 200"), "\(sent.output)")
        let lines = sent.output.split(separator: "\n")
        #expect(lines.first.flatMap { Int($0) } != nil, "the id comes first: \(sent.output)")

        let blocked = try await ChildProcess.run(
            binary,
            [
                "enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "17000000001",
                "--wait", "--timeout", "30",
            ], environment: environment)
        #expect(blocked.status == 1, "\(blocked.output)")
        #expect(blocked.output.contains("failed: statusCode 400, apiCode 2010"), "\(blocked.output)")

        let rejected = try await ChildProcess.run(
            binary,
            [
                "enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "12ab",
                "--wait", "--timeout", "30",
            ], environment: environment)
        #expect(rejected.status == 1, "\(rejected.output)")
        #expect(rejected.output.contains("rejected: statusCode -"), "\(rejected.output)")

        let misuse = try await ChildProcess.run(
            binary, ["enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "1", "--timeout", "3"],
            environment: environment)
        #expect(misuse.status == 64, "--timeout without --wait is a usage error: \(misuse.output)")
    }

    @Test("enqueue --wait outlives its database connection: a restart during the wait is not an answer")
    func waitReconnects() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let waiting = try ChildProcess(
            binary,
            [
                "enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "13800000060",
                "--wait", "--timeout", "40",
            ], environment: ["SMSD_DATABASE_URL": database.url])
        defer { Task { await waiting.stop() } }
        #expect(await eventually(timeout: .seconds(15)) { (try? await unfinishedJobs(database)) == 1 }, "\(waiting.output)")
        // Cut every other session of this database (the waiting command's).
        let cut =
            try await database.query(
                """
                SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                """
            ).first?.int("n") ?? 0
        #expect(cut >= 1)
        let daemon = try startDaemon(database: database, sandbox: sandbox)
        defer { Task { await daemon.stop() } }
        let status = await waiting.waitForExit(timeout: .seconds(40))
        #expect(status == 0, "\(waiting.output)\n\(daemon.output)")
        #expect(waiting.output.contains("reconnecting") && waiting.output.contains("sent: statusCode 200"), "\(waiting.output)")
    }
}
