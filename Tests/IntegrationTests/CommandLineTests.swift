import Foundation
import GenAuth
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// The `sms-dispatcher` commands as an operator runs them, with their exit codes.
@Suite("Command line")
struct CommandLineTests {
    let binary = TestEnvironment.executable("sms-dispatcher")

    @Test func enqueueThenStatus() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let environment = ["SMSD_DATABASE_URL": database.url]
        let enqueued = try await ChildProcess.run(
            binary, ["enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "13800138000"],
            environment: environment)
        #expect(enqueued.status == 0, "\(enqueued.output)")
        let id = try #require(Int(enqueued.output.trimmingCharacters(in: .whitespacesAndNewlines)))
        let row = try #require(
            try await database.query(
                "SELECT channel, phone_number, phone_country_code, state FROM sms.jobs WHERE id = $1", [String(id)]
            ).first)
        #expect(try row.string("phone_number") == "13800138000")
        #expect(try row.string("phone_country_code") == nil)
        #expect(try row.string("state") == "pending")

        // An idempotency key makes a repeated enqueue return the first id.
        let keyed = [
            "enqueue", "--channel", "CHANNEL_REGISTER", "--phone", "5551234567", "--country-code", "+1",
            "--idempotency-key", "signup-42",
        ]
        let once = try await ChildProcess.run(binary, keyed, environment: environment)
        let twice = try await ChildProcess.run(binary, keyed, environment: environment)
        #expect(once.status == 0 && twice.status == 0)
        #expect(once.output == twice.output)
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.jobs").first?.requiredInt("n") == 2)

        let bad = try await ChildProcess.run(
            binary, ["enqueue", "--channel", "CHANNEL_SPAM", "--phone", "1"], environment: environment)
        #expect(bad.status == 64)
        #expect(bad.output.contains("--channel must be one of"))

        let json = try await ChildProcess.run(binary, ["status", "--json"], environment: environment)
        #expect(json.status == 0, "\(json.output)")
        let decoded = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let totals = decoded?["totals"] as? [String: Int]
        #expect(totals?["pending"] == 2)
        #expect(totals?["sent"] == 0)
        #expect((decoded?["queue"] as? [[String: Any]])?.count == 2)

        let table = try await ChildProcess.run(binary, ["status"], environment: environment)
        #expect(table.status == 0)
        #expect(table.output.contains("pending=2"))
        #expect(table.output.contains("CHANNEL_REGISTER"))
        #expect(table.output.contains("no daemon is running"))
    }

    @Test(
        "configuration errors exit 78 and name the key",
        arguments: [
            ([:], "genauth.host"),
            (["SMSD_GENAUTH_HOST": "http://127.0.0.1:9"], "genauth.app_id"),
            (["SMSD_GENAUTH_HOST": "not a url", "SMSD_GENAUTH_APP_ID": "a"], "genauth.host"),
            (["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_CONCURRENCY": "lots"], "concurrency"),
            (["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_CONCURRENCY": "0"], "concurrency"),
            (
                ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_POLL_INTERVAL": "-1"],
                "poll_interval"
            ),
            (
                ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_GENAUTH_HEADER_FAMILY": "okta"],
                "genauth.header_family"
            ),
            (
                ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_THROTTLE_WINDOW": "1.5"],
                "throttle.window"
            ),
            (["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_CONCURENCY": "8"], "SMSD_CONCURENCY"),
            (
                ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_DELIVERY_POLICY": "exactly-once"],
                "delivery.policy"
            ),
            (
                ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_GENAUTH_ACCESS_KEY_ID": "k"],
                "genauth.access_key_secret"
            ),
            (
                ["SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "SMSD_COUNTRIES_ALLOW": "852"],
                "countries.allow"
            ),
            (
                [
                    "SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a",
                    "SMSD_CHANNELS_CHANNEL_LOGIN_ENABLED": "maybe",
                ], "channels.CHANNEL_LOGIN.enabled"
            ),
        ])
    func configErrors(environment: [String: String], key: String) async throws {
        for command in ["check-config", "run"] {
            let result = try await ChildProcess.run(binary, [command], environment: environment)
            #expect(result.status == 78, "\(command): \(result.output)")
            #expect(result.output.contains("configuration error: \(key)"), "\(command): \(result.output)")
        }
    }

    @Test func yamlFileUnknownKeysAndRedaction() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("sms-dispatcher.yaml").path
        try """
        database:
          url: postgresql://smsd:db-password-123@127.0.0.1:1/sms
        genauth:
          host: http://127.0.0.1:9
          app_id: from-file
          app_secret: app-secret-456
        concurrency: 8
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let ok = try await ChildProcess.run(
            binary, ["check-config", "--config", file],
            environment: ["SMSD_GENAUTH_APP_ID": "from-env"])
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("genauth.app_id = from-env"), "the environment overrides the file")
        #expect(ok.output.contains("concurrency = 8"))
        #expect(ok.output.contains("throttle.window = (default) 60"))
        #expect(!ok.output.contains("app-secret-456") && !ok.output.contains("db-password-123"), "\(ok.output)")
        #expect(ok.output.contains("genauth.app_secret = <redacted>"))

        // Secrets from systemd credentials.
        let credentials = directory.appendingPathComponent("credentials")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        try "secret-from-credential\n".write(
            toFile: credentials.appendingPathComponent("genauth-app-secret").path,
            atomically: true, encoding: .utf8)
        let withCredentials = try await ChildProcess.run(
            binary, ["check-config"],
            environment: [
                "SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a", "CREDENTIALS_DIRECTORY": credentials.path,
            ])
        #expect(withCredentials.status == 0, "\(withCredentials.output)")
        #expect(withCredentials.output.contains("genauth.app_secret = <redacted>"))
        #expect(!withCredentials.output.contains("secret-from-credential"))

        try "genauth:\n  host: http://127.0.0.1:9\n  app_id: a\n  appid_typo: b\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        let typo = try await ChildProcess.run(binary, ["check-config", "--config", file])
        #expect(typo.status == 78)
        #expect(typo.output.contains("genauth.appid_typo"), "\(typo.output)")

        let missing = try await ChildProcess.run(
            binary, ["check-config", "--config", directory.appendingPathComponent("nope.yaml").path])
        #expect(missing.status == 78)
        #expect(missing.output.contains("cannot read configuration file"))
    }

    @Test func theShippedExampleConfigurationIsValid() async throws {
        let file = TestEnvironment.repositoryRoot.appendingPathComponent("config/sms-dispatcher.yaml").path
        let result = try await ChildProcess.run(binary, ["check-config", "--config", file])
        #expect(result.status == 0, "\(result.output)")
        for spec in DaemonConfiguration.keySpecs {
            #expect(result.output.contains("  \(spec.name) = "), "check-config lists \(spec.name)")
        }
    }

    @Test func runExits69WhenTheDatabaseOrTheAPIIsUnavailable() async throws {
        let noDatabase = try await ChildProcess.run(
            binary, ["run"],
            environment: [
                "SMSD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2",
                "SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a",
            ])
        #expect(noDatabase.status == 69, "\(noDatabase.output)")
        #expect(noDatabase.output.contains("cannot connect to PostgreSQL"))

        let unmigrated = try await TestDatabase.create(migrated: false)
        defer { Task { await unmigrated.drop() } }
        let noSchema = try await ChildProcess.run(
            binary, ["run"],
            environment: [
                "SMSD_DATABASE_URL": unmigrated.url, "SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a",
            ])
        #expect(noSchema.status == 69)
        #expect(noSchema.output.contains("run `sms-dispatcher migrate`"), "\(noSchema.output)")

        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        // Port 9 (discard) has no listener on loopback here: the API is unreachable.
        let noAPI = try await ChildProcess.run(
            binary, ["run"],
            environment: [
                "SMSD_DATABASE_URL": database.url, "SMSD_GENAUTH_HOST": "http://127.0.0.1:9", "SMSD_GENAUTH_APP_ID": "a",
                "SMSD_GENAUTH_TIMEOUT": "2",
            ])
        #expect(noAPI.status == 69, "\(noAPI.output)")
        #expect(noAPI.output.contains("does not answer"))
    }
}
