import Foundation
import PostgresClient
import GenAuth
import SMSConfiguration
@testable import SMSEngine
import SMSJobStore
import SMSModel
import Testing

@Suite("Schema and migrations")
struct MigrationTests {
    @Test func migrateIsIdempotentAndRecordsVersions() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let run = { try await ChildProcess.run(TestEnvironment.executable("sms-dispatcher"),
                                               ["migrate", "--sql-dir", TestEnvironment.sqlDirectory],
                                               environment: ["SMSD_DATABASE_URL": database.url]) }
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
        let keys = try await database.query("""
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
        let unpaused = try await database.query("SELECT sms.paused_channels() IS NULL AS none, sms.pause_of('CHANNEL_LOGIN') IS NULL AS free").first
        #expect(try unpaused?.bool("none") == true)
        #expect(try unpaused?.bool("free") == true)
        try await database.execute("""
            INSERT INTO sms.controls (channel, paused_by, reason) VALUES ('CHANNEL_LOGIN', 'test', 'one');
            INSERT INTO sms.controls (channel, paused_by, reason) VALUES ('*', 'test', 'all')
            """)
        let paused = try await database.query("""
            SELECT array_to_string(ARRAY(SELECT unnest(sms.paused_channels()) ORDER BY 1), ',') AS channels,
                   (sms.pause_of('CHANNEL_LOGIN')).channel AS login, (sms.pause_of('CHANNEL_REGISTER')).reason AS register
            """).first
        #expect(try paused?.string("channels") == "*,CHANNEL_LOGIN")
        #expect(try paused?.string("login") == "*")
        #expect(try paused?.string("register") == "all")
        // One notification per 7,900 bytes of payload.
        let announced = try await database.query("""
            SELECT sms.announce(ARRAY(SELECT g FROM generate_series(1, 2000) g), array_fill('sent'::text, ARRAY[2000])) AS n,
                   sms.announce('{}', '{}') AS none
            """).first
        #expect(try announced?.int("n") == 3)
        #expect(try announced?.int("none") == 0)
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
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.schema_migrations").first?.requiredInt("n") == SchemaVersion.required)
    }

    @Test func migrateWithABrokenDatabaseURLExits69() async throws {
        let result = try await ChildProcess.run(TestEnvironment.executable("sms-dispatcher"),
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
        try await database.query("INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13800138000'), ('CHANNEL_LOGIN', '13800138001')")
        var received: [PostgresNotification] = []
        _ = await eventually(timeout: .seconds(5)) {
            received += (try? await listener.waitForNotifications(timeout: .milliseconds(200))) ?? []
            return !received.isEmpty
        }
        // One notification per statement, not per row.
        #expect(received.count == 1)
        await listener.close()
        let row = try #require(try await database.query("SELECT state, attempts, priority, max_attempts FROM sms.jobs LIMIT 1").first)
        #expect(try row.string("state") == "pending")
        #expect(try row.int("attempts") == 0)
        #expect(try row.int("max_attempts") == 5)
    }
}
