import AsyncHTTPClient
import Foundation
import GenAuth
import Logging
import NIOCore
import PostgresClient
import SMSConfiguration
import SMSJobStore
import SMSModel
import Synchronization
import SMSTestSupport
import Testing

@testable import SMSEngine

/// Where the real things are: the throwaway cluster `make test` starts, the built executables, `sql/`.
enum TestEnvironment {
    static var adminURL: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["SMSD_TEST_ADMIN_URL"], !url.isEmpty else {
                throw TestSetupError(
                    "SMSD_TEST_ADMIN_URL is not set: run the tests with `make test`, which starts a throwaway PostgreSQL")
            }
            return url
        }
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The migrations as files (the binary embeds the same ones; EmbeddedMigrationsTests checks it).
    static var sqlDirectory: String { repositoryRoot.appendingPathComponent("sql/migrations").path }
    /// Today's schema, one file per object.
    static var schemaDirectory: String { repositoryRoot.appendingPathComponent("sql/schema").path }

    /// The folder holding the test bundle also holds the package's executables.
    static var binDirectory: URL {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(),
            Bundle.main.bundleURL,
            repositoryRoot.appendingPathComponent(".build/debug"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("sms-dispatcher").path) }
            ?? candidates.last!
    }

    static func executable(_ name: String) -> String { binDirectory.appendingPathComponent(name).path }
}

/// A fresh database per test, migrated by the migrations the binary embeds, dropped afterwards: tests never share rows.
final class TestDatabase: Sendable {
    let name: String
    let url: String

    private init(name: String, url: String) {
        self.name = name
        self.url = url
    }

    static func create(migrated: Bool = true) async throws -> TestDatabase {
        let created = try await ThrowawayDatabase.create(
            admin: try TestEnvironment.adminURL, prefix: "smsd_test", migrated: migrated)
        return TestDatabase(name: created.name, url: created.url)
    }

    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(url, applicationName: "smsd-tests")
    }

    /// Runs one statement on a short-lived connection.
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) async throws -> PostgresRows {
        let connection = try await connect()
        do {
            let rows = try await connection.query(sql, parameters)
            await connection.close()
            return rows
        } catch {
            await connection.close()
            throw error
        }
    }

    /// Runs a script of several statements (simple query protocol) on a short-lived connection.
    func execute(_ sql: String) async throws {
        let connection = try await connect()
        do {
            try await connection.execute(sql)
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
    }

    func drop() async {
        guard let admin = try? TestEnvironment.adminURL else { return }
        await ThrowawayDatabase.drop(admin: admin, name: name)
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

/// The real `genauth-sandbox` executable on a free loopback port.
final class SandboxProcess: Sendable {
    let child: ChildProcess
    let baseURL: String

    static func start(_ arguments: [String] = []) async throws -> SandboxProcess {
        let child = try ChildProcess(TestEnvironment.executable("genauth-sandbox"), ["--port", "0"] + arguments)
        var url: String? = nil
        _ = await eventually(timeout: .seconds(20)) {
            if let line = child.output.split(separator: "\n").first(where: { $0.contains("listening on ") }) {
                url = String(line.split(separator: " ").last!)
                return true
            }
            return !child.isRunning
        }
        guard let url else {
            await child.stop()
            throw TestSetupError("genauth-sandbox did not start: \(child.output)")
        }
        return SandboxProcess(child: child, baseURL: url)
    }

    private init(child: ChildProcess, baseURL: String) {
        self.child = child
        self.baseURL = baseURL
    }

    struct Report: Decodable {
        struct Send: Decodable {
            let requestId: String
            let channel: String
            let phoneNumber: String
            let phoneCountryCode: String?
            let at: Double
        }
        let requests: Int
        let accepted: [Send]
        let answers: [String: Int]
        let perSecond: [String: Int]
        let tokensIssued: Int
    }

    func report() async throws -> Report {
        let (_, body) = try await HTTP.request("GET", baseURL + "/__sandbox/sends")
        return try JSONDecoder().decode(Report.self, from: Data(body.utf8))
    }

    func stop() async { await child.stop() }
}

/// Plain HTTP for the tests, through AsyncHTTPClient.
enum HTTP {
    static func request(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: String? = nil
    )
        async throws -> (status: Int, body: String)
    {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return (Int(response.status.code), String(buffer: bytes))
    }
}

/// A daemon process with settings that make tests quick: short polls, retries and timeouts.
func startDaemon(database: TestDatabase, sandbox: SandboxProcess, extra: [String: String] = [:]) throws -> ChildProcess {
    var environment = [
        "SMSD_DATABASE_URL": database.url,
        "SMSD_GENAUTH_HOST": sandbox.baseURL,
        "SMSD_GENAUTH_APP_ID": "test-app",
        "SMSD_POLL_INTERVAL": "0.2",
        "SMSD_RETRY_BASE_DELAY": "0.1",
        "SMSD_RETRY_MAX_DELAY": "0.5",
        "SMSD_GENAUTH_TIMEOUT": "1",
        "SMSD_HEARTBEAT_INTERVAL": "0.5",
        "SMSD_LEASE_DURATION": "5",
        "SMSD_LOG_LEVEL": "info",
        // The fraud guard is on, as in production, so every suite (the fault suites too) runs the
        // reservation with it; but the suites insert sequential numbers by the hundred, which its
        // per-prefix limit (50 an hour per 10,000 numbers) would stop. FraudGuardTests set their own.
        "SMSD_FRAUD_MODE": "enforce",
        "SMSD_FRAUD_PER_PREFIX_HOUR": "0",
    ]
    environment.merge(extra) { _, new in new }
    return try ChildProcess(TestEnvironment.executable("sms-dispatcher"), ["run"], environment: environment)
}

/// Counts jobs by state.
func stateCounts(_ database: TestDatabase) async throws -> [String: Int] {
    let rows = try await database.query("SELECT state, count(*)::int AS n FROM sms.jobs GROUP BY state")
    var counts: [String: Int] = [:]
    for row in rows.rows { counts[try row.requiredString("state")] = try row.requiredInt("n") }
    return counts
}

func unfinishedJobs(_ database: TestDatabase) async throws -> Int {
    try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state IN ('pending', 'running')")
        .first!.requiredInt("n")
}

/// Runs a command that starts a long-lived grandchild (`pg_ctl restart` starts a new postgres) and
/// waits for the command alone. Foundation's `Process` is no use here: its termination check relies
/// on descriptors the grandchild would inherit and keep open. So: posix_spawn bash (dash cannot close descriptors above 9), which closes every
/// inherited descriptor above stderr, exec the command, and poll `waitpid` (bounded).
func runDetachingGrandchildren(_ arguments: [String], timeout: Duration = .seconds(90)) async throws -> Int32 {
    let script =
        #"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; exec "$@" >/dev/null 2>&1"#
    let argv = ["/bin/bash", "-c", script, "bash"] + arguments
    var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for argument in cArguments { free(argument) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, "/bin/bash", nil, nil, &cArguments, environ)
    guard spawned == 0 else { throw TestSetupError("posix_spawn failed: \(spawned)") }
    let deadline = ContinuousClock.now + timeout
    var status: Int32 = 0
    while ContinuousClock.now < deadline {
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid { return (status >> 8) & 0xff }
        try await Task.sleep(for: .milliseconds(50))
    }
    kill(pid, SIGKILL)
    throw TestSetupError("\(arguments) did not finish within \(timeout)")
}

/// A claimed job as triage passes it on (the tests' jobs are valid).
func valid(_ job: ClaimedJob) -> ValidJob {
    guard case .send(let valid) = Triage(configuration: .init(), throttleWindow: .seconds(60)).decide(job) else {
        fatalError("job \(job.id) is not sendable: \(job)")
    }
    return valid
}

/// Retention as the daemon configures it: 30 days, 100 rows a statement.
func retention(budget: Duration) -> RetentionService.Configuration {
    var configuration = RetentionService.Configuration()
    configuration.maxAge = .seconds(30 * 86_400)
    configuration.batchSize = 100
    configuration.budget = budget
    return configuration
}
