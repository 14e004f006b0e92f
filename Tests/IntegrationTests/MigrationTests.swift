import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

@testable import SMSEngine

@Suite("Schema and migrations")
struct MigrationTests {
    @Test func migrateIsIdempotentAndRecordsVersions() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let run = {
            try await ChildProcess.run(
                TestEnvironment.executable("sms-dispatcher"),
                ["migrate", "--sql-dir", TestEnvironment.sqlDirectory],
                environment: ["SMSD_DATABASE_URL": database.url])
        }
        let first = try await run()
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("applied 1, 2, 3, 4, 5"))
        let second = try await run()
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("up to date"))
        let versions = try await database.query("SELECT version FROM sms.schema_migrations ORDER BY version")
        #expect(try versions.rows.map { try $0.requiredInt("version") } == Array(1...SchemaVersion.required))
    }

    @Test("version 12's helpers answer as the SQL functions they replace (phone key, pauses, announcements)")
    func helpersKeepTheirAnswers() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        // The phone key as version 7 spelt it, next to the inlined one: a short number, an empty and a
        // given country code, and a key past 200 bytes (its md5 form).
        let long = String(repeating: "9", count: 240)
        let keys = try await database.query(
            """
            SELECT n, sms.phone_key(cc, num) AS got,
                   (SELECT CASE WHEN octet_length(k) <= 200 THEN k ELSE 'md5:' || md5(k) END
                    FROM (SELECT COALESCE(NULLIF(cc, ''), '+86') || ' ' || num AS k) key) AS want
            FROM (VALUES (1, NULL, '13800138000'), (2, '', '13800138000'), (3, '+1', '4155550100'),
                         (4, '+44', $1)) AS v(n, cc, num) ORDER BY n
            """, [long])
        #expect(keys.rows.count == 4)
        for row in keys.rows {
            let n = try row.requiredInt("n")
            #expect(try row.string("got") == row.string("want"), "case \(n)")
        }
        #expect(try keys.rows[3].requiredString("got").hasPrefix("md5:"))
        // Pauses: none, then one channel, then all (the '*' row wins).
        let unpaused = try await database.query(
            "SELECT sms.paused_channels() IS NULL AS none, sms.pause_of('CHANNEL_LOGIN') IS NULL AS free"
        ).first
        #expect(try unpaused?.bool("none") == true)
        #expect(try unpaused?.bool("free") == true)
        try await database.execute(
            """
            INSERT INTO sms.controls (channel, paused_by, reason) VALUES ('CHANNEL_LOGIN', 'test', 'one');
            INSERT INTO sms.controls (channel, paused_by, reason) VALUES ('*', 'test', 'all')
            """)
        let paused = try await database.query(
            """
            SELECT array_to_string(ARRAY(SELECT unnest(sms.paused_channels()) ORDER BY 1), ',') AS channels,
                   (sms.pause_of('CHANNEL_LOGIN')).channel AS login, (sms.pause_of('CHANNEL_REGISTER')).reason AS register
            """
        ).first
        #expect(try paused?.string("channels") == "*,CHANNEL_LOGIN")
        #expect(try paused?.string("login") == "*")
        #expect(try paused?.string("register") == "all")
        // One notification per 7,900 bytes of payload.
        let announced = try await database.query(
            """
            SELECT sms.announce(ARRAY(SELECT g FROM generate_series(1, 2000) g), array_fill('sent'::text, ARRAY[2000])) AS n,
                   sms.announce('{}', '{}') AS none
            """
        ).first
        #expect(try announced?.int("n") == 3)
        #expect(try announced?.int("none") == 0)
    }

    @Test(
        "version 13's fraud guard decides and counts as version 10's (a passing batch, a limit, an allow-listed number, a block, monitor mode)"
    )
    func guardKeepsItsAnswers() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        // Version 10's guard, as it was written, under another name.
        let source = try String(contentsOfFile: TestEnvironment.sqlDirectory + "/0010_fraud.sql", encoding: .utf8)
        guard let start = source.range(of: "CREATE FUNCTION sms.fraud_decide("),
            let end = source.range(of: "\n$$;", range: start.upperBound..<source.endIndex)
        else {
            throw TestSetupError("no sms.fraud_decide in 0010_fraud.sql")
        }
        try await database.execute(
            String(source[start.lowerBound..<end.upperBound])
                .replacingOccurrences(of: "sms.fraud_decide(", with: "sms.fraud_decide_v10("))
        // One IP with 9 sends ten minutes ago (per_ip_hour 10: one more passes), an allow-listed range.
        try await database.execute(
            """
            INSERT INTO sms.fraud_counts (scope, key, minute, requests, sends)
            VALUES ('ip', '198.51.100.7', '2026-01-01 11:50:00+00', 9, 9);
            INSERT INTO sms.fraud_allowed (prefix) VALUES ('+4470090')
            """)
        let connection = try await database.connect()
        // Each function in a transaction of its own, rolled back: its rows, then every counter.
        func decide(_ function: String, _ arguments: String, setup: String) async throws -> String {
            try await connection.execute("BEGIN; SET LOCAL TimeZone = 'UTC'; " + setup)
            let rows = try await connection.query(
                """
                SELECT string_agg(concat_ws('/', r_index, r_decision, r_rule, r_detail), ';' ORDER BY r_index) AS d
                FROM \(function)('2026-01-01 12:00:00+00', \(arguments))
                """)
            let counts = try await connection.query(
                """
                SELECT string_agg(concat_ws('/', scope, key, minute, requests, sends, limited), ';' ORDER BY scope, key, minute) AS c
                FROM sms.fraud_counts
                """)
            try await connection.execute("ROLLBACK")
            return "\(try rows.first?.string("d") ?? "-") | \(try counts.first?.string("c") ?? "-")"
        }
        let block = """
            INSERT INTO sms.fraud_blocks (scope, key, since, until, reason)
            VALUES ('prefix', '+86 1380000', '2026-01-01 11:00:00+00', '2026-01-01 13:00:00+00', 'test burst');
            INSERT INTO sms.fraud_trusted (user_ref, verified_at) VALUES ('known', '2026-01-01 10:00:00+00');
            """
        let cases: [(arguments: String, setup: String)] = [
            // Passing batches: distinct keys; a shared user; no IP and an empty user; no limits at all.
            (
                "ARRAY['+86 13800000001', '+86 13900000002'], ARRAY['10.0.0.1', '10.0.0.2']::inet[], ARRAY['u1', 'u2'], 'enforce', '{10,10,50,0}', 30",
                ""
            ),
            (
                "ARRAY['+86 13800000001', '+86 13800000002'], ARRAY['10.0.0.1', '10.0.0.2']::inet[], ARRAY['u1', 'u1'], 'enforce', '{10,10,50,0}', 30",
                ""
            ),
            ("ARRAY['+86 13800000001'], ARRAY[NULL]::inet[], ARRAY[''], 'enforce', '{10,10,50,0}', 30", ""),
            ("ARRAY['+86 13800000001'], ARRAY['10.0.0.1']::inet[], ARRAY['u1'], 'enforce', '{0,0,0,0}', 30", ""),
            // The IP's tenth send passes, its eleventh is stopped (or flagged).
            (
                "ARRAY['+86 13800000001', '+86 13900000002', '+1 4155550100'], ARRAY['198.51.100.7', '198.51.100.7', '10.0.0.3']::inet[], ARRAY['a', 'b', 'c'], 'enforce', '{10,10,50,0}', 30",
                ""
            ),
            (
                "ARRAY['+86 13800000001', '+86 13900000002'], ARRAY['198.51.100.7', '198.51.100.7']::inet[], ARRAY['a', 'b'], 'monitor', '{10,10,50,0}', 30",
                ""
            ),
            // An allow-listed number among others.
            (
                "ARRAY['+44 7009001234', '+86 13800000001'], ARRAY['10.0.0.1', '10.0.0.2']::inet[], ARRAY['u1', 'u2'], 'enforce', '{10,10,50,0}', 30",
                ""
            ),
            // A blocked prefix: a stranger is stopped, a known user passes.
            (
                "ARRAY['+86 13800001234', '+86 13800005678', '+86 13900000002'], ARRAY['10.0.0.1', '10.0.0.2', '10.0.0.3']::inet[], ARRAY['stranger', 'known', 'u3'], 'enforce', '{10,10,50,0}', 30",
                block
            ),
            ("ARRAY['+86 13900000002'], ARRAY['10.0.0.3']::inet[], ARRAY['u3'], 'enforce', '{10,10,50,0}', 30", block),
            ("ARRAY['+86 13800000001'], ARRAY['10.0.0.1']::inet[], ARRAY['u1'], 'off', '{10,10,50,0}', 30", ""),
        ]
        var answers: [String] = []
        for (n, test) in cases.enumerated() {
            let now = try await decide("sms.fraud_decide", test.arguments, setup: test.setup)
            let was = try await decide("sms.fraud_decide_v10", test.arguments, setup: test.setup)
            #expect(now == was, "case \(n): \(test.arguments)")
            answers.append(now)
        }
        await connection.close()
        // The cases reach every path: a pass, a stop by a limit, a flag, an allow, a block and a trusted user.
        #expect(answers[0].hasPrefix("1/pass;2/pass |"))
        #expect(answers[4].contains("2/blocked/per_ip_hour/"))
        #expect(answers[5].contains("2/flagged/per_ip_hour/"))
        #expect(answers[6].hasPrefix("1/allowed;2/pass |"))
        #expect(answers[7].hasPrefix("1/blocked/prefix_block/"))
        #expect(answers[7].contains(";2/pass;3/pass |"))
        #expect(answers[9] == "- | ip/198.51.100.7/2026-01-01 11:50:00+00/9/9/0")
    }

    @Test func concurrentMigrationsTakeTurns() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let arguments = ["migrate", "--sql-dir", TestEnvironment.sqlDirectory]
        let environment = ["SMSD_DATABASE_URL": database.url]
        let children = try (0..<3).map { _ in
            try ChildProcess(TestEnvironment.executable("sms-dispatcher"), arguments, environment: environment)
        }
        for child in children {
            let status = await child.waitForExit(timeout: .seconds(60))
            #expect(status == 0, "\(child.output)")
        }
        let applied = children.filter { $0.output.contains("applied 1, 2, 3, 4, 5") }.count
        #expect(applied == 1)
        #expect(children.filter { $0.output.contains("up to date") }.count == 2)
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.schema_migrations").first?.requiredInt("n")
                == SchemaVersion.required)
    }

    @Test func migrateWithABrokenDatabaseURLExits69() async throws {
        let result = try await ChildProcess.run(
            TestEnvironment.executable("sms-dispatcher"),
            ["migrate", "--sql-dir", TestEnvironment.sqlDirectory],
            environment: ["SMSD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2"])
        #expect(result.status == 69)
        #expect(result.output.contains("cannot connect to PostgreSQL"))
    }

    @Test func constraintsAndTheInsertNotification() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        do {
            try await database.query("INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_SPAM', '13800138000')")
            Issue.record("unknown channel accepted by the CHECK")
        } catch let error as PostgresError {
            #expect(error.sqlState == "23514")
        }
        let listener = try await database.connect()
        try await listener.listen("sms_jobs")
        try await database.query(
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13800138000'), ('CHANNEL_LOGIN', '13800138001')"
        )
        var received: [PostgresNotification] = []
        _ = await eventually(timeout: .seconds(5)) {
            received += (try? await listener.waitForNotifications(timeout: .milliseconds(200))) ?? []
            return !received.isEmpty
        }
        // One notification per statement, not per row.
        #expect(received.count == 1)
        await listener.close()
        let row = try #require(
            try await database.query("SELECT state, attempts, priority, max_attempts FROM sms.jobs LIMIT 1").first)
        #expect(try row.string("state") == "pending")
        #expect(try row.int("attempts") == 0)
        #expect(try row.int("max_attempts") == 5)
    }

    /// Issue 26: a migration's ALTER TABLE waiting behind another session's long transaction queued every
    /// producer's insert behind it for as long. Its lock waits are bounded now: it rolls back, says which
    /// transactions are open, and tries again, and producers go on meanwhile.
    @Test("a migration behind a long transaction waits in bounded tries; producers are not held; it gives up naming the holder")
    func migrationLocksAreBounded() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let all = try Migrator.load(directory: TestEnvironment.sqlDirectory)
        let db = try await database.connect()
        try await Migrator(migrations: all.migrations.filter { $0.version <= 13 }).migrate(db, logger: quietLogger)
        // A report holding a transaction that read sms.jobs (its lock conflicts with ALTER TABLE's).
        let report = try await PostgresConnection.connect(database.url, applicationName: "long report")
        try await report.execute("BEGIN; SELECT count(*) FROM sms.jobs")
        var migrator = all
        migrator.lockTimeout = .milliseconds(300)
        migrator.retryAfter = .milliseconds(700)
        migrator.patience = .seconds(30)
        let migrating = Task { try await migrator.migrate(db, logger: quietLogger) }
        // Producers go on while it waits: each insert waits at most one lock_timeout (300 ms) behind the
        // migration's try. Unbounded, an insert would wait for the report, which commits only after this
        // loop: the 5 s bound tells "held until the report ends" from "a try's worth" on a loaded CI host.
        try await Task.sleep(for: .milliseconds(500))
        for n in 0..<5 {
            let started = ContinuousClock.now
            try await database.query(
                "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', $1)", ["1380000000\(n)"])
            #expect(ContinuousClock.now - started < .seconds(5), "an insert waited behind the migration")
            try await Task.sleep(for: .milliseconds(200))
        }
        let look = try await database.connect()
        #expect(try await Migrator.currentVersion(look) == 13, "still waiting for the report")
        await look.close()
        try await report.execute("COMMIT")
        let applied = try await migrating.value
        #expect(applied == [14])
        // Never released: it gives up, naming the transaction it waited behind.
        try await report.execute("BEGIN; SELECT count(*) FROM sms.jobs")
        var impatient = Migrator(migrations: [Migration(version: 99, name: "alter", sql: "ALTER TABLE sms.jobs ADD COLUMN x int")]
        )
        impatient.lockTimeout = .milliseconds(200)
        impatient.retryAfter = .milliseconds(300)
        impatient.patience = .seconds(1)
        do {
            _ = try await impatient.migrate(db, logger: quietLogger)
            Issue.record("the migration ran while a transaction held its lock")
        } catch let error as MigrationError {
            #expect(error.code == .lockUnavailable && error.message.contains("long report"), "\(error)")
        }
        await report.close()
        await db.close()
    }
}
