import Foundation
import PostgresClient
import SMSModel
import Testing
import SMSTestSupport

/// Issue 26: connection poolers, with Debian's real PgBouncer (`scripts/ensure-deps.sh` installs it).
/// Producers through transaction pooling work (a plain INSERT, `sms.enqueue`, `enqueue --wait`); a
/// daemon through session pooling works; a daemon through transaction pooling, which would land its
/// prepared statements and session settings in other clients' sessions and loop for ever, refuses to
/// start (exit 78) naming the pooling mode and the fix.
@Suite("Connection poolers (PgBouncer)", .serialized)
struct PoolerTests {
    @Test("a daemon through transaction pooling refuses to start (exit 78), naming the pooling mode and the fix")
    func transactionPoolingRefused() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let bouncer = try await PgBouncer.start(mode: "transaction")
        defer { Task { await bouncer.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: ["SMSD_DATABASE_URL": bouncer.url(database)])
        let status = await daemon.waitForExit(timeout: .seconds(30))
        #expect(status == 78, "\(daemon.output)")
        #expect(
            daemon.output.contains("pool_mode = transaction") && daemon.output.contains("pool_mode = session"),
            "\(daemon.output)")
    }

    @Test("a daemon through session pooling drains the queue; producers through transaction pooling insert, enqueue and wait")
    func sessionPoolingAndProducers() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let session = try await PgBouncer.start(mode: "session")
        defer { Task { await session.stop() } }
        let transaction = try await PgBouncer.start(mode: "transaction")
        defer { Task { await transaction.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: ["SMSD_DATABASE_URL": session.url(database)])
        defer { Task { await daemon.stop() } }
        // Producers: many short transactions through the transaction pool, from several connections.
        let producers = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    let db = try await PostgresConnection.connect(transaction.url(database), applicationName: "producer")
                    var inserted = 0
                    for n in 0..<25 {
                        let phone = "1516\(worker)" + String(format: "%06d", n)
                        if n % 2 == 0 {
                            try await db.query(
                                "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', $1)", [phone])
                        } else {
                            try await db.query("SELECT sms.enqueue('CHANNEL_LOGIN', $1, idempotency_key => $1) AS id", [phone])
                        }
                        inserted += 1
                    }
                    await db.close()
                    return inserted
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(producers == 100)
        let waited = try await ChildProcess.run(
            TestEnvironment.executable("sms-dispatcher"),
            ["enqueue", "--channel", "CHANNEL_LOGIN", "--phone", "15169999999", "--wait", "--timeout", "30"],
            environment: ["SMSD_DATABASE_URL": transaction.url(database)], timeout: .seconds(45))
        #expect(waited.status == 0 && waited.output.contains("sent"), "\(waited.output)\n\(daemon.output)")
        let drained = await eventually(timeout: .seconds(30)) { (try? await stateCounts(database))?["sent"] == 101 }
        let counts = try await stateCounts(database)
        #expect(drained, "\(counts)\n\(daemon.output)")
        #expect(daemon.isRunning && !daemon.output.contains("prepared statement"), "\(daemon.output)")
    }
}

/// Debian's PgBouncer on a free loopback port, in front of the test cluster, trusting every user.
final class PgBouncer: Sendable {
    let child: ChildProcess
    let port: Int
    let directory: String

    static func start(mode: String) async throws -> PgBouncer {
        let environment = ProcessInfo.processInfo.environment
        guard let pgPort = environment["SMSD_TEST_PG_PORT"] else { throw TestSetupError("run under scripts/with-postgres.sh") }
        guard let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].first(where: FileManager.default.isExecutableFile)
        else { throw TestSetupError("pgbouncer is not installed (scripts/ensure-deps.sh installs it)") }
        let directory = NSTemporaryDirectory() + "smsd-pgbouncer-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let port = try freeLocalPort()
        let users = ["postgres"].map { "\"\($0)\" \"\"" }.joined(separator: "\n") + "\n"
        try users.write(toFile: directory + "/users.txt", atomically: true, encoding: .utf8)
        try """
        [databases]
        * = host=127.0.0.1 port=\(pgPort)
        [pgbouncer]
        listen_addr = 127.0.0.1
        listen_port = \(port)
        unix_socket_dir =
        auth_type = trust
        auth_file = \(directory)/users.txt
        pool_mode = \(mode)
        default_pool_size = 10
        max_client_conn = 200
        logfile = \(directory)/pgbouncer.log
        pidfile = \(directory)/pgbouncer.pid
        """.write(toFile: directory + "/pgbouncer.ini", atomically: true, encoding: .utf8)
        // PgBouncer will not run as root: as root it switches to the postgres user itself (-u).
        var arguments = [directory + "/pgbouncer.ini"]
        if getuid() == 0 {
            _ = try await ChildProcess.run("/bin/chown", ["-R", "postgres:", directory])
            arguments = ["-u", "postgres"] + arguments
        }
        let child = try ChildProcess(binary, arguments)
        let bouncer = PgBouncer(child: child, port: port, directory: directory)
        let ready = await eventually(timeout: .seconds(10)) {
            (try? await PostgresConnection.connect("postgresql://postgres@127.0.0.1:\(port)/postgres")).map { connection in
                Task { await connection.close() }
                return true
            } ?? false
        }
        guard ready else {
            let log = (try? String(contentsOfFile: directory + "/pgbouncer.log", encoding: .utf8)) ?? ""
            await bouncer.stop()
            throw TestSetupError("pgbouncer did not start: \(child.output)\n\(log)")
        }
        return bouncer
    }

    private init(child: ChildProcess, port: Int, directory: String) {
        self.child = child
        self.port = port
        self.directory = directory
    }

    /// The test database's URL, through this pooler.
    func url(_ database: TestDatabase) -> String {
        "postgresql://postgres@127.0.0.1:\(port)/\(database.name)"
    }

    /// SIGKILL (a throwaway pooler; its clients are gone or going).
    func stop() async {
        await child.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
