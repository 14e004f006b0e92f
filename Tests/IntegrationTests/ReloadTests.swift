import Foundation
import PostgresClient
import Testing
import SMSTestSupport

/// SIGHUP re-reads the configuration of a running daemon (real processes, real signals): live keys
/// apply to the jobs claimed afterwards without a restart, an invalid file changes nothing, and
/// restart-only keys are named and left as they were.
@Suite("Configuration reload (SIGHUP)", .serialized)
struct ReloadTests {
    /// A configuration file of the test's own; `write` replaces its text, as an operator's editor would.
    final class ConfigFile: Sendable {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-reload-\(UUID().uuidString)")
        var path: String { directory.appendingPathComponent("sms-dispatcher.yaml").path }

        init(_ text: String) throws {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try write(text)
        }

        func write(_ text: String) throws { try text.write(toFile: path, atomically: true, encoding: .utf8) }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    /// `sms-dispatcher run --config FILE` with `startDaemon`'s quick settings, except that the log level
    /// (and, with `databaseInFile`, the database URL) come from the file: the environment would win over it.
    func start(
        _ database: TestDatabase, _ sandbox: SandboxProcess, _ file: ConfigFile, databaseInFile: Bool = false,
        extra: [String: String] = [:]
    ) async throws -> ChildProcess {
        var environment = [
            "SMSD_GENAUTH_HOST": sandbox.baseURL, "SMSD_GENAUTH_APP_ID": "test-app", "SMSD_POLL_INTERVAL": "0.2",
            "SMSD_RETRY_BASE_DELAY": "0.1", "SMSD_RETRY_MAX_DELAY": "0.5", "SMSD_GENAUTH_TIMEOUT": "1",
            "SMSD_HEARTBEAT_INTERVAL": "0.5", "SMSD_LEASE_DURATION": "5",
        ]
        if !databaseInFile { environment["SMSD_DATABASE_URL"] = database.url }
        environment.merge(extra) { $1 }
        let daemon = try ChildProcess(
            TestEnvironment.executable("sms-dispatcher"), ["run", "--config", file.path],
            environment: environment)
        let started = await eventually(timeout: .seconds(30)) {
            daemon.output.contains("dispatcher started") || !daemon.isRunning
        }
        guard started, daemon.isRunning else {
            await daemon.stop()
            throw TestSetupError("the daemon did not start: \(daemon.output)")
        }
        return daemon
    }

    /// Sends SIGHUP and waits (bounded) for the `n`th line containing `marker`.
    func reload(_ daemon: ChildProcess, expecting marker: String, count n: Int) async -> Bool {
        daemon.signal(SIGHUP)
        return await eventually(timeout: .seconds(20)) { lines(daemon, containing: marker).count >= n }
    }

    func lines(_ daemon: ChildProcess, containing text: String) -> [Substring] {
        daemon.output.split(separator: "\n").filter { $0.contains(text) }
    }

    func insert(_ database: TestDatabase, _ channel: String, _ phone: String, country: String? = nil) async throws -> Int {
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code) VALUES ($1, $2, $3) RETURNING id
            """, [channel, phone, country]
        ).first!.requiredInt("id")
    }

    /// The job's terminal state and message, waiting up to 30 s; nil state if it never got there.
    func outcome(_ database: TestDatabase, _ id: Int) async throws -> (state: String?, message: String) {
        var result: (String?, String) = (nil, "")
        _ = try await eventually(timeout: .seconds(30)) {
            let row = try await database.query("SELECT state, message FROM sms.jobs WHERE id = $1", [String(id)]).first!
            let state = try row.requiredString("state")
            result = (["pending", "running"].contains(state) ? nil : state, try row.string("message") ?? "")
            return result.0 != nil
        }
        return result
    }

    @Test("a live change applies to jobs claimed after the reload, both ways, in the same process; the log level too")
    func liveChange() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--international"])
        defer { Task { await sandbox.stop() } }
        let strict = """
            log:
              level: info
            channels:
              CHANNEL_REGISTER:
                enabled: false
            countries:
              international: false
            """
        let file = try ConfigFile(strict)
        defer { file.remove() }
        let daemon = try await start(database, sandbox, file)
        defer { Task { await daemon.stop() } }
        let pid = daemon.pid

        let login = try await insert(database, "CHANNEL_LOGIN", "13800001001")
        let register = try await insert(database, "CHANNEL_REGISTER", "13800001002")
        let hongKong = try await insert(database, "CHANNEL_LOGIN", "91234567", country: "+852")
        #expect(try await outcome(database, login).state == "sent")
        let refused = try await outcome(database, register)
        #expect(refused.state == "rejected" && refused.message.contains("channels.CHANNEL_REGISTER.enabled"), "\(refused)")
        let abroad = try await outcome(database, hongKong)
        #expect(abroad.state == "rejected" && abroad.message.contains("countries.international"), "\(abroad)")
        // At info, the per-call debug line is not written.
        #expect(lines(daemon, containing: "job attempt").isEmpty, "\(daemon.output)")

        try file.write(
            """
            log:
              level: debug
            channels:
              CHANNEL_REGISTER:
                enabled: true
                priority: 7
            countries:
              international: true
              allow: ["+852"]
            """)
        #expect(await reload(daemon, expecting: "configuration reloaded", count: 1), "\(daemon.output)")
        let applied = try #require(lines(daemon, containing: "configuration reloaded").first)
        for key in ["log.level", "channels.CHANNEL_REGISTER.enabled", "countries.international", "countries.allow"] {
            #expect(applied.contains(key), "\(applied)")
        }
        #expect(lines(daemon, containing: "take effect only at a restart").isEmpty, "\(daemon.output)")
        // The new default priority reaches the insert trigger's table.
        let published = try await eventually(timeout: .seconds(10)) {
            try await database.query(
                "SELECT default_priority::int AS p FROM sms.channel_settings WHERE channel = 'CHANNEL_REGISTER'"
            )
            .first?.int("p") == 7
        }
        #expect(published)

        let registerAfter = try await insert(database, "CHANNEL_REGISTER", "13800001003")
        let hongKongAfter = try await insert(database, "CHANNEL_LOGIN", "91234568", country: "+852")
        let singapore = try await insert(database, "CHANNEL_LOGIN", "81234567", country: "+65")
        let sent = try await outcome(database, registerAfter)
        #expect(sent.state == "sent", "\(sent) \(daemon.output)")
        #expect(try await outcome(database, hongKongAfter).state == "sent")
        let notAllowed = try await outcome(database, singapore)
        #expect(notAllowed.state == "rejected" && notAllowed.message.contains("countries.allow"), "\(notAllowed)")
        // Now at debug: the calls made after the reload have their line.
        #expect(!lines(daemon, containing: "job attempt").isEmpty, "\(daemon.output)")

        // And back.
        try file.write(strict)
        #expect(await reload(daemon, expecting: "configuration reloaded", count: 2), "\(daemon.output)")
        let registerAgain = try await insert(database, "CHANNEL_REGISTER", "13800001004")
        let refusedAgain = try await outcome(database, registerAgain)
        #expect(refusedAgain.state == "rejected" && refusedAgain.message.contains("disabled by configuration"), "\(refusedAgain)")
        let debugLines = lines(daemon, containing: "job attempt").count
        #expect(try await outcome(database, try await insert(database, "CHANNEL_LOGIN", "13800001005")).state == "sent")
        #expect(lines(daemon, containing: "job attempt").count == debugLines, "back at info: \(daemon.output)")

        #expect(daemon.isRunning && daemon.pid == pid, "\(daemon.output)")
        let workers = try await database.query("SELECT count(*)::int AS n FROM sms.workers WHERE pid = $1", [String(pid)])
        #expect(try workers.first!.requiredInt("n") == 1)
    }

    @Test("an invalid file changes nothing: one line names the key, the old rules apply, systemd hears RELOADING=1 then READY=1")
    func invalidFile() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let socket = try NotifySocket()
        defer { socket.close() }
        let strict = """
            channels:
              CHANNEL_REGISTER:
                enabled: false
            """
        let file = try ConfigFile(strict)
        defer { file.remove() }
        let daemon = try await start(database, sandbox, file, extra: ["NOTIFY_SOCKET": socket.path])
        defer { Task { await daemon.stop() } }
        let pid = daemon.pid

        // Channel allowed, and a value out of range: the whole file is refused.
        try file.write(
            """
            channels:
              CHANNEL_REGISTER:
                enabled: true
            caps:
              per_phone_hour: 5000
            """)
        #expect(await reload(daemon, expecting: "configuration reload refused", count: 1), "\(daemon.output)")
        let refused = lines(daemon, containing: "configuration reload refused")
        #expect(
            refused.count == 1 && refused[0].contains("key=caps.per_phone_hour") && refused[0].contains(file.path),
            "\(refused)")
        #expect(lines(daemon, containing: "configuration reloaded").isEmpty, "\(daemon.output)")
        let register = try await insert(database, "CHANNEL_REGISTER", "13800002001")
        let result = try await outcome(database, register)
        #expect(result.state == "rejected" && result.message.contains("disabled by configuration"), "\(result)")
        #expect(daemon.isRunning && daemon.pid == pid)

        // systemd's reload protocol, even for a refused file: RELOADING=1 with the monotonic time, then READY=1.
        let notified = await eventually(timeout: .seconds(5)) {
            socket.drain()
            guard let reloading = socket.messages.lastIndex(where: { $0.contains("RELOADING=1") }) else { return false }
            return socket.messages[reloading...].contains { $0.contains("READY=1") }
        }
        #expect(notified, "\(socket.messages)")
        let reloading = try #require(socket.messages.first { $0.contains("RELOADING=1") })
        let usec = reloading.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }
            .flatMap { Int64($0.dropFirst("MONOTONIC_USEC=".count)) }
        #expect((usec ?? 0) > 0, "\(reloading)")

        // A misspelt key is refused the same way, naming it.
        try file.write("channels:\n  CHANNEL_REGISTER:\n    enabld: true\n")
        #expect(await reload(daemon, expecting: "configuration reload refused", count: 2), "\(daemon.output)")
        #expect(
            lines(daemon, containing: "configuration reload refused").last?.contains("key=channels.CHANNEL_REGISTER.enabld")
                == true)

        // The daemon still reloads once the file is right.
        try file.write("channels:\n  CHANNEL_REGISTER:\n    enabled: true\n")
        #expect(await reload(daemon, expecting: "configuration reloaded", count: 1), "\(daemon.output)")
        #expect(try await outcome(database, try await insert(database, "CHANNEL_REGISTER", "13800002002")).state == "sent")
        #expect(daemon.isRunning && daemon.pid == pid)
    }

    @Test("restart-only keys are named in one line and not applied; a live key in the same file is")
    func restartOnly() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        // The database URL from the file, not the environment (which would win over it).
        let file = try ConfigFile(
            """
            database:
              url: "\(database.url)"
            concurrency: 4
            channels:
              CHANNEL_REGISTER:
                enabled: false
            """)
        defer { file.remove() }
        let daemon = try await start(database, sandbox, file, databaseInFile: true)
        defer { Task { await daemon.stop() } }
        let pid = daemon.pid
        let bogus = "postgresql://reload-test-user:reload-test-secret@127.0.0.1:1/no_such_database"
        try file.write(
            """
            database:
              url: "\(bogus)"
            concurrency: 8
            channels:
              CHANNEL_REGISTER:
                enabled: true
            """)
        #expect(await reload(daemon, expecting: "configuration reloaded", count: 1), "\(daemon.output)")
        let named = lines(daemon, containing: "take effect only at a restart")
        #expect(named.count == 1 && named.first?.contains("keys=database.url,concurrency") == true, "\(daemon.output)")
        #expect(
            lines(daemon, containing: "configuration reloaded").first?.contains("changed=channels.CHANNEL_REGISTER.enabled")
                == true,
            "\(daemon.output)")
        // Values are never logged: the URL holds a password.
        #expect(!daemon.output.contains("reload-test-secret"))
        // Still on the old database (the new URL leads nowhere), with the live change applied.
        let register = try await insert(database, "CHANNEL_REGISTER", "13800003001")
        let result = try await outcome(database, register)
        #expect(result.state == "sent", "\(result) \(daemon.output)")
        #expect(daemon.isRunning && daemon.pid == pid)
        // A second reload of the same file: the restart-only keys are still pending a restart (named
        // again), nothing live changed.
        #expect(await reload(daemon, expecting: "no live key changed", count: 1), "\(daemon.output)")
        #expect(lines(daemon, containing: "take effect only at a restart").count == 2)
    }
}
