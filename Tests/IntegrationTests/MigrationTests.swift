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
