import Foundation
import PostgresClient
import SMSModel
import Synchronization
import Testing
import SMSTestSupport

/// Issue 26: the randomized fault soak, because scenario tests only find the faults someone named.
/// Three daemons (real processes, a least-privilege login) drain a steady producer stream (resends for
/// the same phone and channel, hostile values, scripted failures) while faults follow each other on
/// two tracks at once, some lasting longer than lease + GenAuth's window: processes killed or stopped,
/// PostgreSQL restarted, down or read-only, a second process under a worker id in use, a pause, a
/// neighbour login holding advisory locks on the daemon's keys and a snapshot; GenAuth slow, late,
/// failing, dropping connections, answering through a gateway, hanging. Then calm. Then the invariant is
/// checked from the outside, against the sandbox's log of accepted SMS: nothing stuck or lost, no row
/// that contradicts GenAuth, a second SMS only on a row that says it may have happened.
///
/// Time is scaled down: GenAuth's window is 8 s here (the sandbox's and `throttle.window`), the lease
/// 2 s, the call timeout 1 s, the channels' TTL 40 s; "longer than the window" means longer than 10.5 s.
/// `make soak MINUTES=N SEED=S` runs it alone; `make test` runs 3 minutes with a fixed seed. The seed
/// and the whole fault schedule are printed first: a run is reproducible up to timing.
@Suite("Randomized fault soak", .serialized)
struct SoakTests {
    static let window = 8.0
    static let lease = 2.0
    static let rescue = 0.5
    static let ttl = 40.0
    static let daemons = 3

    @Test("soak: random faults in sequence, then calm; every row agrees with what GenAuth accepted")
    func soak() async throws {
        let environment = ProcessInfo.processInfo.environment
        let minutes = environment["SMSD_SOAK_MINUTES"].flatMap(Double.init) ?? 3
        let seed = environment["SMSD_SOAK_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...999_999)
        let cluster = try SoakCluster()
        print("soak: seed=\(seed) minutes=\(minutes) (reproduce: make soak MINUTES=\(minutes) SEED=\(seed))")

        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let roles = try await SoakRoles.create(database)
        let sandbox = try await SandboxProcess.start([
            "--window", "\(Int(Self.window))", "--latency-ms", "20",
            "--hang-seconds", "3",
        ])
        defer { Task { await sandbox.stop() } }
        let fleet = SoakFleet(database: database, url: roles.daemonURL, sandbox: sandbox)
        for index in 0..<Self.daemons { try fleet.start(index) }
        defer { Task { await fleet.stopAll() } }

        var random = SeededGenerator(seed: seed)
        let duration = minutes * 60
        let schedule = SoakSchedule.make(duration: duration, random: &random)
        print("soak: schedule (seconds from start: fault):")
        for entry in schedule.all { print(String(format: "  %6.1f  %@", entry.at, entry.fault.description)) }

        let log = SoakLog()
        let producer = SoakProducer(url: roles.producerURL, seed: random.next(), log: log)
        let start = ContinuousClock.now
        let end = start + .seconds(duration)
        let producing = Task { await producer.run(until: end) }
        let faults = SoakFaults(
            cluster: cluster, database: database, sandbox: sandbox, fleet: fleet, producer: producer,
            neighbourURL: roles.neighbourURL, log: log, start: start)
        await withTaskGroup(of: Void.self) { group in
            for track in schedule.tracks {
                group.addTask { await faults.play(track) }
            }
        }
        await producing.value
        let faultsEnded = ContinuousClock.now

        // Calm: every fault undone, every daemon up, no new jobs. Every job must now end: the TTL (40 s)
        // bounds them all, plus the lease, the window and a margin.
        await faults.calm()
        let calmStart = ContinuousClock.now
        let settled = await eventually(timeout: .seconds(Self.ttl + Self.window + 40)) {
            (try? await unfinishedJobs(database)) == 0
        }
        let settledAfter = ContinuousClock.now - calmStart
        let verdict = try await SoakVerdict.check(database: database, sandbox: sandbox)
        let stuck = try await database.query(
            """
            SELECT id, state, message, run_at, locked_by, uncertain FROM sms.jobs WHERE state IN ('pending', 'running')
            ORDER BY id LIMIT 10
            """
        ).rows.map { row in
            "\((try? row.int("id")) ?? 0) \((try? row.string("state")) ?? "") \((try? row.string("message")) ?? "") run_at=\((try? row.string("run_at")) ?? "") locked_by=\((try? row.string("locked_by")) ?? "-")"
        }
        // The live daemons' rows (a killed one's row stays until retention forgets it).
        let live = fleet.livePIDs().map(String.init).joined(separator: ",")
        let inFlight =
            try await database.query(
                "SELECT coalesce(sum(in_flight), 0)::int AS n FROM sms.workers WHERE pid IN (\(live.isEmpty ? "0" : live))"
            )
            .first?.requiredInt("n") ?? -1
        let unexpected = fleet.unexpectedExits()

        print("soak: \(log.summary)")
        print("soak: \(verdict.summary)")
        print(
            String(
                format: "soak: faults ended after %.0f s; calm: all jobs terminal after %.1f s; first call after calm %@",
                (faultsEnded - start).seconds, settledAfter.seconds, verdict.firstAcceptanceAfter(calmStart: calmStart)))
        #expect(settled, "jobs still unfinished after the calm: \(stuck)")
        #expect(
            verdict.violations.isEmpty,
            "rows that contradict GenAuth's log:\n\(verdict.violations.prefix(20).joined(separator: "\n"))")
        #expect(inFlight == 0, "live daemons report calls in flight after the calm: \(inFlight)")
        #expect(unexpected.isEmpty, "daemons that exited on their own:\n\(unexpected.joined(separator: "\n---\n"))")
        if !settled || !verdict.violations.isEmpty || inFlight != 0 {
            let workers = try await database.query(
                """
                SELECT id, pid, in_flight, unwritten,
                       (SELECT round(extract(epoch FROM next_slot - now())::numeric, 1) FROM sms.rate_schedule) AS ahead,
                       (SELECT count(*) FROM sms.jobs j WHERE j.locked_by = w.id AND j.state = 'running') AS running
                FROM sms.workers w ORDER BY id
                """
            ).rows.map { row in
                ["id", "pid", "in_flight", "running", "unwritten", "ahead"]
                    .map { "\($0)=\((try? row.string($0)) ?? "-")" }.joined(separator: " ")
            }
            print("soak: workers (ahead: the rate schedule's next slot, seconds from now):\n\(workers.joined(separator: "\n"))")
            print("soak: last daemon output:\n\(fleet.tails())")
        }
    }
}

/// SplitMix64: the soak's randomness, reproducible from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The throwaway cluster `make test` started: restarted, stopped and started again, made read-only.
struct SoakCluster: Sendable {
    let pgCtl: [String]
    let data: String
    let adminURL: String

    init() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let pgCtl = environment["SMSD_TEST_PG_CTL"], let data = environment["SMSD_TEST_PG_DATA"] else {
            throw TestSetupError("run the soak under scripts/with-postgres.sh (make soak)")
        }
        self.pgCtl = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--", pgCtl] : [pgCtl]
        self.data = data
        self.adminURL = try TestEnvironment.adminURL
    }

    func restart(immediate: Bool) async throws {
        _ = try await runDetachingGrandchildren(
            pgCtl + [
                "-D", data, "-m", immediate ? "immediate" : "fast", "-w", "-t", "60",
                "-l", data + "/../server.log", "restart",
            ])
    }

    func stop() async throws {
        _ = try await runDetachingGrandchildren(pgCtl + ["-D", data, "-m", "immediate", "-w", "-t", "60", "stop"])
    }

    /// Starts it with the options it was first started with (`postmaster.opts`, written at each start).
    func start() async throws {
        _ = try await runDetachingGrandchildren(
            pgCtl + [
                "-D", data, "-w", "-t", "60", "-l", data + "/../server.log",
                "-o", try Self.options(data), "start",
            ])
    }

    static func options(_ data: String) throws -> String {
        let opts = try String(contentsOfFile: data + "/postmaster.opts", encoding: .utf8)
        // /path/postgres "-D" "/data" "-p" "1234" ...: every quoted argument but the data directory's.
        var arguments = opts.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        if let index = arguments.firstIndex(of: "-D") { arguments.removeSubrange(index...min(index + 1, arguments.count - 1)) }
        return arguments.map { "'" + $0 + "'" }.joined(separator: " ")
    }

    func readOnly(_ on: Bool) async throws {
        let admin = try await PostgresConnection.connect(adminURL, applicationName: "soak")
        defer { Task { await admin.close() } }
        try await admin.execute(
            on
                ? "ALTER SYSTEM SET default_transaction_read_only = on"
                : "ALTER SYSTEM RESET default_transaction_read_only")
        try await admin.execute("SELECT pg_reload_conf()")
    }
}

/// Login roles as a site would make them: the daemons' (sms_dispatcher only), a producer's, and a
/// neighbour with no rights on the schema at all.
struct SoakRoles {
    let daemonURL: String
    let producerURL: String
    let neighbourURL: String

    static func create(_ database: TestDatabase) async throws -> SoakRoles {
        try await database.execute(
            """
            DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'soak_daemon') THEN CREATE ROLE soak_daemon LOGIN; END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'soak_producer') THEN CREATE ROLE soak_producer LOGIN; END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'soak_neighbour') THEN CREATE ROLE soak_neighbour LOGIN; END IF;
            END $$;
            GRANT sms_dispatcher TO soak_daemon;
            GRANT sms_producer TO soak_producer;
            """)
        func url(_ user: String) -> String {
            database.url.replacingOccurrences(of: "postgresql://postgres@", with: "postgresql://\(user)@")
        }
        return SoakRoles(daemonURL: url("soak_daemon"), producerURL: url("soak_producer"), neighbourURL: url("soak_neighbour"))
    }
}

/// What happened during the run, for the summary.
final class SoakLog: Sendable {
    private struct State {
        var inserted = 0
        var refused = 0
        var resends = 0
        var hostile = 0
        var faults: [String: Int] = [:]
    }
    private let state = Mutex(State())

    func inserted(resend: Bool, hostile: Bool) {
        state.withLock {
            $0.inserted += 1
            if resend { $0.resends += 1 }
            if hostile { $0.hostile += 1 }
        }
    }
    func refused() { state.withLock { $0.refused += 1 } }
    func fault(_ name: String) { state.withLock { $0.faults[name, default: 0] += 1 } }

    var summary: String {
        state.withLock { s in
            "inserted=\(s.inserted) (resends \(s.resends), hostile \(s.hostile)) refused_inserts=\(s.refused) faults="
                + s.faults.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")
        }
    }
}

/// The daemons: started, killed, stopped and restarted by the faults; an exit nobody caused is a finding.
final class SoakFleet: Sendable {
    let database: TestDatabase
    let url: String
    let sandbox: SandboxProcess
    private struct Slot {
        var process: ChildProcess?
        var expectingExit = false
        var outputs: [String] = []
    }
    private let slots = Mutex<[Int: Slot]>([:])
    private let unexpected = Mutex<[String]>([])

    init(database: TestDatabase, url: String, sandbox: SandboxProcess) {
        self.database = database
        self.url = url
        self.sandbox = sandbox
    }

    static func environment(worker: String, url: String) -> [String: String] {
        [
            "SMSD_DATABASE_URL": url,
            "SMSD_WORKER_ID": worker,
            "SMSD_THROTTLE_WINDOW": "\(Int(SoakTests.window))",
            "SMSD_LEASE_DURATION": "\(SoakTests.lease)",
            "SMSD_LEASE_RESCUE_INTERVAL": "\(SoakTests.rescue)",
            "SMSD_HEARTBEAT_INTERVAL": "0.5",
            "SMSD_GENAUTH_TIMEOUT": "1",
            "SMSD_CONCURRENCY": "16",
            "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "100",
            "SMSD_BREAKER_FAILURE_THRESHOLD": "10",
            "SMSD_BREAKER_COOL_DOWN": "1",
            "SMSD_RETRY_BASE_DELAY": "0.2",
            "SMSD_RETRY_MAX_DELAY": "2",
            "SMSD_CHANNELS_DEFAULTS_TTL": "\(Int(SoakTests.ttl))",
            "SMSD_SHUTDOWN_GRACE": "3",
            "SMSD_LOG_LEVEL": "info",
        ]
    }

    func start(_ index: Int, worker: String? = nil) throws {
        let process = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.environment(worker: worker ?? "soak-\(index)", url: url))
        slots.withLock {
            $0[index, default: Slot()].process = process
            $0[index]!.expectingExit = false
        }
    }

    func process(_ index: Int) -> ChildProcess? { slots.withLock { $0[index]?.process } }

    /// Notes an exit nobody caused (called before each fault on a daemon, and at the end).
    func checkAlive(_ index: Int) {
        slots.withLock { slots in
            guard let slot = slots[index], let process = slot.process, !slot.expectingExit, !process.isRunning else { return }
            unexpected.withLock {
                $0.append(
                    "daemon \(index) exited by itself (status \(process.process.terminationStatus)):\n\(process.output.suffix(3000))"
                )
            }
            slots[index]!.process = nil
        }
    }

    func kill(_ index: Int) async {
        checkAlive(index)
        guard let process = expectExit(index) else { return }
        process.signal(SIGKILL)
        _ = await process.waitForExit(timeout: .seconds(10))
        keep(index, process.output)
    }

    /// SIGTERM; the drain must end within grace + the writer's 10 s, with exit 0.
    func terminate(_ index: Int) async {
        checkAlive(index)
        guard let process = expectExit(index) else { return }
        process.signal(SIGTERM)
        let status = await process.waitForExit(timeout: .seconds(30))
        keep(index, process.output)
        if status != 0 {
            unexpected.withLock {
                $0.append(
                    "daemon \(index) did not stop cleanly on SIGTERM (status \(status.map(String.init) ?? "still running")):\n\(process.output.suffix(3000))"
                )
            }
            await process.stop()
        }
    }

    private func expectExit(_ index: Int) -> ChildProcess? {
        slots.withLock { slots in
            guard let process = slots[index]?.process else { return nil }
            slots[index]!.expectingExit = true
            return process
        }
    }

    private func keep(_ index: Int, _ output: String) {
        slots.withLock {
            $0[index]!.outputs.append(String(output.suffix(20_000)))
            $0[index]!.process = nil
        }
    }

    /// Every daemon of the fleet running again.
    func ensureRunning() throws {
        for index in 0..<SoakTests.daemons {
            checkAlive(index)
            if process(index) == nil { try start(index) }
        }
    }

    func livePIDs() -> [Int32] {
        slots.withLock { $0.values.compactMap { $0.process }.filter(\.isRunning).map(\.pid) }
    }

    func unexpectedExits() -> [String] {
        for index in 0..<SoakTests.daemons { checkAlive(index) }
        return unexpected.withLock { $0 }
    }

    func tails() -> String {
        slots.withLock { slots in
            slots.keys.sorted().map { index in
                let current = slots[index]?.process?.output ?? ""
                return "--- daemon \(index):\n" + String(current.suffix(4000))
            }.joined(separator: "\n")
        }
    }

    func stopAll() async {
        let processes = slots.withLock { $0.values.compactMap(\.process) }
        for process in processes { await process.stop() }
    }
}

/// One fault of the schedule, with how long it lasts.
enum SoakFault: Sendable, CustomStringConvertible {
    case kill(daemon: Int, restartAfter: Double)
    case terminate(daemon: Int)
    case restartDatabase(immediate: Bool)
    case databaseDown(seconds: Double)
    case readOnly(seconds: Double)
    case neighbour(seconds: Double)
    case twin(daemon: Int, seconds: Double)
    case pause(channel: String, seconds: Double)
    case slow(ms: Int, seconds: Double)
    case late(ms: Int, rate: Double, seconds: Double)
    case failing(rate: Double, seconds: Double)
    case dropping(afterAccept: Bool, rate: Double, seconds: Double)
    case gateway(rate: Double, seconds: Double)
    case lateThenFailing(late: Double, failing: Double)
    case hanging(rate: Double, seconds: Double)

    var name: String {
        switch self {
        case .kill: "kill-9"
        case .terminate: "sigterm"
        case .restartDatabase: "db-restart"
        case .databaseDown: "db-down"
        case .readOnly: "db-read-only"
        case .neighbour: "neighbour"
        case .twin: "twin-worker-id"
        case .pause: "pause"
        case .slow: "genauth-slow"
        case .late: "genauth-late"
        case .failing: "genauth-503"
        case .dropping: "genauth-drop"
        case .gateway: "genauth-gateway"
        case .lateThenFailing: "genauth-late-then-503"
        case .hanging: "genauth-hang"
        }
    }

    var description: String {
        switch self {
        case .kill(let d, let after): String(format: "kill -9 daemon %d, restarted %.1f s later", d, after)
        case .terminate(let d): "SIGTERM daemon \(d), restarted once it exits"
        case .restartDatabase(let immediate): "PostgreSQL restart (\(immediate ? "immediate: a crash" : "fast"))"
        case .databaseDown(let s): String(format: "PostgreSQL down for %.1f s", s)
        case .readOnly(let s): String(format: "PostgreSQL read-only for %.1f s", s)
        case .neighbour(let s): String(format: "a neighbour login holds the daemon's advisory keys and a snapshot for %.1f s", s)
        case .twin(let d, let s): String(format: "a second process with daemon %d's worker id for %.1f s, then kill -9", d, s)
        case .pause(let c, let s): String(format: "pause %@ for %.1f s", c, s)
        case .slow(let ms, let s): String(format: "GenAuth %d ms slow for %.1f s", ms, s)
        case .late(let ms, let rate, let s):
            String(format: "GenAuth accepts, answers %d ms late (%.0f%%) for %.1f s", ms, rate * 100, s)
        case .failing(let rate, let s): String(format: "GenAuth HTTP 503 (%.0f%%) for %.1f s", rate * 100, s)
        case .dropping(let accept, let rate, let s):
            String(format: "GenAuth drops connections%@ (%.0f%%) for %.1f s", accept ? " after accepting" : "", rate * 100, s)
        case .gateway(let rate, let s):
            String(format: "a gateway answers 502/504 after GenAuth accepted (%.0f%%) for %.1f s", rate * 100, s)
        case .lateThenFailing(let late, let failing):
            String(format: "GenAuth late for %.1f s, then 503 for %.1f s", late, failing)
        case .hanging(let rate, let s): String(format: "GenAuth hangs (%.0f%%) for %.1f s", rate * 100, s)
        }
    }
}

/// Two tracks of faults that follow each other (the database and the processes; GenAuth), each a
/// seeded random sequence with gaps of 1-6 s; a third of the faults with a duration outlast lease +
/// window.
struct SoakSchedule {
    struct Entry: Sendable {
        let at: Double
        let fault: SoakFault
    }
    let tracks: [[Entry]]

    var all: [Entry] { tracks.flatMap { $0 }.sorted { $0.at < $1.at } }

    static func make(duration: Double, random: inout SeededGenerator) -> SoakSchedule {
        func length(_ random: inout SeededGenerator) -> Double {
            // Short, medium, or longer than lease + rescue + window (10.5 s here).
            switch Int.random(in: 0..<3, using: &random) {
            case 0: return Double.random(in: 2...5, using: &random)
            case 1: return Double.random(in: 5...10, using: &random)
            default: return Double.random(in: 12...25, using: &random)
            }
        }
        func estimate(_ fault: SoakFault) -> Double {
            switch fault {
            case .kill(_, let after): after + 1
            case .terminate: 4
            case .restartDatabase: 3
            case .databaseDown(let s), .readOnly(let s), .neighbour(let s), .twin(_, let s), .pause(_, let s),
                .slow(_, let s), .late(_, _, let s), .failing(_, let s), .dropping(_, _, let s), .gateway(_, let s),
                .hanging(_, let s):
                s
            case .lateThenFailing(let a, let b): a + b
            }
        }
        var database: [Entry] = []
        var t = Double.random(in: 3...6, using: &random)
        while t < duration - 5 {
            let daemon = Int.random(in: 0..<SoakTests.daemons, using: &random)
            let fault: SoakFault
            switch Int.random(in: 0..<9, using: &random) {
            case 0, 1: fault = .kill(daemon: daemon, restartAfter: Double.random(in: 0...3, using: &random))
            case 2: fault = .terminate(daemon: daemon)
            case 3: fault = .restartDatabase(immediate: Bool.random(using: &random))
            case 4: fault = .databaseDown(seconds: length(&random))
            case 5: fault = .readOnly(seconds: length(&random))
            case 6: fault = .neighbour(seconds: length(&random))
            case 7: fault = .twin(daemon: daemon, seconds: Double.random(in: 3...10, using: &random))
            default:
                fault = .pause(
                    channel: ["CHANNEL_LOGIN", "CHANNEL_VERIFY_MFA", "CHANNEL_REGISTER"].randomElement(using: &random)!,
                    seconds: length(&random))
            }
            database.append(Entry(at: t, fault: fault))
            t += estimate(fault) + Double.random(in: 1...6, using: &random)
        }
        var genauth: [Entry] = []
        t = Double.random(in: 2...8, using: &random)
        while t < duration - 5 {
            let fault: SoakFault
            switch Int.random(in: 0..<7, using: &random) {
            case 0: fault = .slow(ms: [300, 800, 1500].randomElement(using: &random)!, seconds: length(&random))
            case 1: fault = .late(ms: 1500, rate: [0.5, 1].randomElement(using: &random)!, seconds: length(&random))
            case 2: fault = .failing(rate: [0.5, 1].randomElement(using: &random)!, seconds: length(&random))
            case 3:
                fault = .dropping(
                    afterAccept: Bool.random(using: &random), rate: [0.3, 1].randomElement(using: &random)!,
                    seconds: length(&random))
            case 4: fault = .gateway(rate: [0.3, 1].randomElement(using: &random)!, seconds: length(&random))
            case 5:
                fault = .lateThenFailing(
                    late: Double.random(in: 2...4, using: &random), failing: Double.random(in: 12...25, using: &random))
            default: fault = .hanging(rate: [0.3, 1].randomElement(using: &random)!, seconds: length(&random))
            }
            genauth.append(Entry(at: t, fault: fault))
            t += estimate(fault) + Double.random(in: 1...6, using: &random)
        }
        return SoakSchedule(tracks: [database, genauth])
    }
}

/// The steady stream of jobs: about 12 a second from a producer login, most for new phones, some resends
/// for a phone and channel asked a moment ago, some hostile values, some scripted GenAuth failures.
final class SoakProducer: Sendable {
    let url: String
    let log: SoakLog
    private let state: Mutex<(random: SeededGenerator, next: Int, recent: [(phone: String, channel: String)])>
    private let base: Int

    init(url: String, seed: UInt64, log: SoakLog) {
        self.url = url
        self.log = log
        var random = SeededGenerator(seed: seed)
        base = Int.random(in: 10_000_000...80_000_000, using: &random)
        state = Mutex((random, 0, []))
    }

    /// The next phones a new job will use (a neighbour locks their keys).
    func upcomingPhones(_ count: Int) -> [String] {
        let next = state.withLock { $0.next }
        return (0..<count).map { Self.phone(base + next + $0) }
    }

    static func phone(_ n: Int) -> String { "13" + String(format: "%09d", n % 1_000_000_000) }

    func run(until end: ContinuousClock.Instant) async {
        var connection: PostgresConnection? = nil
        while ContinuousClock.now < end {
            let started = ContinuousClock.now
            if connection == nil { connection = try? await PostgresConnection.connect(url, applicationName: "soak producer") }
            if let db = connection {
                let (sql, parameters, resend, hostile) = nextJob()
                do {
                    try await db.query(sql, parameters)
                    log.inserted(resend: resend, hostile: hostile)
                } catch let error as PostgresError where error.isConnectionProblem {
                    await db.close()
                    connection = nil
                    log.refused()
                } catch {
                    // Refused values (a bound, read-only): the producer sees the error, nothing is lost.
                    log.refused()
                }
            }
            let spent = ContinuousClock.now - started
            try? await Task.sleep(for: max(.milliseconds(20), .milliseconds(80) - spent))
        }
        await connection?.close()
    }

    private func nextJob() -> (String, [String?], resend: Bool, hostile: Bool) {
        state.withLock { s in
            let insert =
                "INSERT INTO sms.jobs (channel, phone_number, phone_country_code, max_attempts, expires_at, client_ip, user_ref) VALUES ($1, $2, $3, $4::smallint, now() + make_interval(secs => $5::float8), $6::inet, $7)"
            let channels = ["CHANNEL_LOGIN", "CHANNEL_VERIFY_MFA", "CHANNEL_REGISTER"]
            let roll = Int.random(in: 0..<100, using: &s.random)
            let ip =
                "10.\(Int.random(in: 0...255, using: &s.random)).\(Int.random(in: 0...255, using: &s.random)).\(Int.random(in: 1...254, using: &s.random))"
            if roll < 10, let recent = s.recent.randomElement(using: &s.random) {
                // The user pressed "resend": a new job for the same phone and channel.
                return (
                    insert, [recent.channel, recent.phone, nil, "5", "\(SoakTests.ttl)", ip, "user-\(recent.phone)"], true, false
                )
            }
            if roll < 14 {
                let hostile: [(String?, String?)] = [
                    ("abc1234567", nil), ("１３８００１３８０００", nil), (String(repeating: "9", count: 40), nil),
                    (String(repeating: "1", count: 5000), nil), ("13800138000", String(repeating: "+", count: 3000)),
                    ("13800138000", "86"), ("13800138000", "+0086"), ("5550123", "+1"), ("", nil),
                ]
                let (phone, code) = hostile.randomElement(using: &s.random)!
                return (
                    insert, [channels.randomElement(using: &s.random)!, phone, code, "5", "\(SoakTests.ttl)", ip, nil], false,
                    true
                )
            }
            let n = base + s.next
            s.next += 1
            var phone = Self.phone(n)
            if roll < 19 {
                // Scripted at the sandbox: body 500 twice, HTTP 503 three times, or a hang once.
                let scripts = ["1710002", "1720003", "1740001"]
                phone = scripts.randomElement(using: &s.random)! + String(format: "%04d", n % 10_000)
            }
            let channel = channels.randomElement(using: &s.random)!
            s.recent.append((phone, channel))
            if s.recent.count > 200 { s.recent.removeFirst(s.recent.count - 200) }
            let attempts = roll < 22 ? "1" : "5"
            let expires = roll < 24 ? "3" : "\(SoakTests.ttl)"
            return (insert, [channel, phone, nil, attempts, expires, ip, "user-\(phone)"], false, false)
        }
    }
}

/// Plays the schedule's faults and undoes them.
final class SoakFaults: Sendable {
    let cluster: SoakCluster
    let database: TestDatabase
    let sandbox: SandboxProcess
    let fleet: SoakFleet
    let producer: SoakProducer
    let neighbourURL: String
    let log: SoakLog
    let start: ContinuousClock.Instant

    init(
        cluster: SoakCluster, database: TestDatabase, sandbox: SandboxProcess, fleet: SoakFleet, producer: SoakProducer,
        neighbourURL: String, log: SoakLog, start: ContinuousClock.Instant
    ) {
        self.cluster = cluster
        self.database = database
        self.sandbox = sandbox
        self.fleet = fleet
        self.producer = producer
        self.neighbourURL = neighbourURL
        self.log = log
        self.start = start
    }

    func play(_ track: [SoakSchedule.Entry]) async {
        for entry in track {
            let due = start + .seconds(entry.at)
            if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
            log.fault(entry.fault.name)
            do {
                try await apply(entry.fault)
            } catch {
                print("soak: fault \(entry.fault) failed to apply: \(error)")
            }
        }
    }

    private func genauth(_ faults: String) async {
        _ = try? await HTTP.request("POST", sandbox.baseURL + "/__sandbox/faults", body: faults)
    }

    private func apply(_ fault: SoakFault) async throws {
        switch fault {
        case .kill(let daemon, let after):
            await fleet.kill(daemon)
            try await Task.sleep(for: .seconds(after))
            try fleet.start(daemon)
        case .terminate(let daemon):
            await fleet.terminate(daemon)
            try fleet.start(daemon)
        case .restartDatabase(let immediate):
            try await cluster.restart(immediate: immediate)
        case .databaseDown(let seconds):
            try await cluster.stop()
            try await Task.sleep(for: .seconds(seconds))
            try await cluster.start()
        case .readOnly(let seconds):
            try await cluster.readOnly(true)
            try await Task.sleep(for: .seconds(seconds))
            try await cluster.readOnly(false)
        case .neighbour(let seconds):
            try await neighbour(for: seconds)
        case .twin(let daemon, let seconds):
            let twin = try startDaemon(
                database: database, sandbox: sandbox,
                extra: SoakFleet.environment(worker: "soak-\(daemon)", url: fleet.url))
            try await Task.sleep(for: .seconds(seconds))
            await twin.stop()
        case .pause(let channel, let seconds):
            _ = try await ChildProcess.run(
                TestEnvironment.executable("sms-dispatcher"),
                ["pause", "--channel", channel, "--for", "\(Int(seconds.rounded(.up)))s", "--reason", "soak"],
                environment: ["SMSD_DATABASE_URL": database.url])
            try await Task.sleep(for: .seconds(seconds))
        case .slow(let ms, let seconds):
            await genauth("{\"latencyMs\":\(ms)}")
            try await Task.sleep(for: .seconds(seconds))
            await genauth("{}")
        case .late(let ms, let rate, let seconds):
            await genauth("{\"lateAnswerMs\":\(ms),\"lateAnswerRate\":\(rate)}")
            try await Task.sleep(for: .seconds(seconds))
            await genauth("{}")
        case .failing(let rate, let seconds):
            await genauth("{\"rate503\":\(rate)}")
            try await Task.sleep(for: .seconds(seconds))
            await genauth("{}")
        case .dropping(let afterAccept, let rate, let seconds):
            await genauth("{\"rateDrop\":\(rate),\"dropAfterAccept\":\(afterAccept)}")
            try await Task.sleep(for: .seconds(seconds))
            await genauth("{}")
        case .gateway(let rate, let seconds):
            await genauth("{\"rateGatewayAfterAccept\":\(rate)}")
            try await Task.sleep(for: .seconds(seconds))
            await genauth("{}")
        case .lateThenFailing(let late, let failing):
            await genauth("{\"lateAnswerMs\":1500,\"lateAnswerRate\":1}")
            try await Task.sleep(for: .seconds(late))
            await genauth("{\"rate503\":1}")
            try await Task.sleep(for: .seconds(failing))
            await genauth("{}")
        case .hanging(let rate, let seconds):
            await genauth("{\"rateTimeout\":\(rate),\"hangSeconds\":3}")
            try await Task.sleep(for: .seconds(seconds))
            await genauth("{}")
        }
    }

    /// Another login on the shared database: session advisory locks on the keys the daemon's SQL used
    /// to take (the next phones' window keys, retention's and the fraud evaluator's), and a snapshot
    /// held open, for `seconds`.
    private func neighbour(for seconds: Double) async throws {
        let locks = try await PostgresConnection.connect(neighbourURL, applicationName: "soak neighbour")
        let snapshot = try await PostgresConnection.connect(neighbourURL, applicationName: "soak neighbour snapshot")
        do {
            for phone in producer.upcomingPhones(40) {
                try await locks.query("SELECT pg_advisory_lock(hashtextextended($1, 7212330012))", ["+86 " + phone])
            }
            try await locks.execute("SELECT pg_advisory_lock(7212330012), pg_advisory_lock(7212330014)")
            try await snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
            try await Task.sleep(for: .seconds(seconds))
        } catch {
            await locks.close()
            await snapshot.close()
            throw error
        }
        await locks.close()
        await snapshot.close()
    }

    /// Every fault undone: GenAuth healthy, the database up and writable, every daemon running.
    func calm() async {
        await genauth("{}")
        if (try? await PostgresConnection.connect(cluster.adminURL, applicationName: "soak")) == nil {
            try? await cluster.start()
        }
        try? await cluster.readOnly(false)
        try? fleet.ensureRunning()
    }
}

/// The invariant, checked from the outside: the rows against the sandbox's log of accepted SMS, per
/// phone and channel (a resend is another job for the same pair).
struct SoakVerdict {
    var violations: [String] = []
    var jobs = 0
    var accepted = 0
    var sent = 0
    var presumed = 0
    var possibleDuplicates = 0
    var unknown = 0
    var duplicates = 0
    var acceptedAt: [Double] = []

    var summary: String {
        "jobs=\(jobs) accepted_by_genauth=\(accepted) sent=\(sent) presumed_sent=\(presumed) delivery_unknown=\(unknown) possible_duplicates=\(possibleDuplicates) second_sms=\(duplicates) violations=\(violations.count)"
    }

    func firstAcceptanceAfter(calmStart: ContinuousClock.Instant) -> String {
        let calmEpoch = Date().timeIntervalSince1970 - (ContinuousClock.now - calmStart).seconds
        guard let first = acceptedAt.filter({ $0 >= calmEpoch }).min() else { return "none (nothing was due)" }
        return String(format: "%.1f s after it began", first - calmEpoch)
    }

    /// The marks a row carries when it admits a delivery it cannot prove, or a second SMS.
    static let mayHaveDelivered = "may have been delivered"
    static let secondSMS = "second SMS"

    static func check(database: TestDatabase, sandbox: SandboxProcess) async throws -> SoakVerdict {
        var verdict = SoakVerdict()
        let report = try await sandbox.report()
        verdict.accepted = report.accepted.count
        verdict.acceptedAt = report.accepted.map(\.at)
        var acceptances: [String: [SandboxProcess.Report.Send]] = [:]
        for send in report.accepted {
            acceptances["\(send.phoneCountryCode ?? "+86") \(send.phoneNumber)|\(send.channel)", default: []].append(send)
        }
        let rows = try await database.query(
            """
            SELECT id, channel, phone_key, state, coalesce(message, '') AS message, request_id, attempts FROM sms.jobs
            WHERE octet_length(phone_key) < 40 ORDER BY id
            """
        ).rows
        verdict.jobs = rows.count
        // Calls each job made, as the attempts log has them (a call fenced out of its claim is logged but
        // not counted in the row's attempts).
        var logged: [Int: Int] = [:]
        for row in try await database.query("SELECT job_id, count(*)::int AS n FROM sms.attempts GROUP BY job_id").rows {
            logged[try row.requiredInt("job_id")] = try row.requiredInt("n")
        }
        struct Job {
            let id: Int
            let state: String
            let message: String
            let requestID: String?
            let attempts: Int
        }
        var groups: [String: [Job]] = [:]
        for row in rows {
            let key = "\(try row.requiredString("phone_key"))|\(try row.requiredString("channel"))"
            groups[key, default: []].append(
                Job(
                    id: try row.requiredInt("id"), state: try row.requiredString("state"),
                    message: try row.requiredString("message"), requestID: try row.string("request_id"),
                    attempts: try row.requiredInt("attempts")))
        }
        var suspects: [Int] = []
        for (key, jobs) in groups {
            let accepted = acceptances[key] ?? []
            let ids = Set(accepted.map(\.requestId))
            let sent = jobs.filter { $0.state == "sent" }
            let unknown = jobs.filter { $0.state != "sent" && $0.message.contains(mayHaveDelivered) }
            let second = jobs.filter { $0.message.contains(secondSMS) }
            verdict.sent += sent.count
            verdict.presumed += sent.filter { $0.message.contains("presumed sent") }.count
            verdict.unknown += unknown.count
            verdict.possibleDuplicates += second.count
            verdict.duplicates += max(0, accepted.count - jobs.count)
            // What the rows admit: one SMS per sent row; a row that says an SMS may have been delivered
            // admits one for each call it made, and a row that says a second one went out or may have, at
            // least two.
            let admitted = jobs.reduce(0) { total, job in
                let calls = max(job.attempts, logged[job.id] ?? 0)
                if job.message.contains(secondSMS) { return total + max(calls, 2) }
                if job.message.contains(mayHaveDelivered) { return total + max(calls, job.state == "sent" ? 1 : 0) }
                return total + (job.state == "sent" ? 1 : 0)
            }
            let describe = {
                jobs.map { "job \($0.id) \($0.state) attempts=\($0.attempts): \($0.message.prefix(240))" }.joined(separator: "; ")
            }
            let calls = {
                accepted.map { String(format: "%.1f %@", $0.at.truncatingRemainder(dividingBy: 10_000), $0.requestId) }.joined(
                    separator: ", ")
            }
            if accepted.count > admitted {
                verdict.violations.append(
                    "\(key): GenAuth accepted \(accepted.count) [\(calls())], the rows admit \(admitted): \(describe())")
                suspects += jobs.map(\.id)
            }
            if sent.count > accepted.count {
                verdict.violations.append(
                    "\(key): \(sent.count) rows say sent, GenAuth accepted \(accepted.count): \(describe())")
                suspects += jobs.map(\.id)
            }
            for job in sent where !job.message.contains("presumed sent") {
                if let requestID = job.requestID, !ids.contains(requestID) {
                    verdict.violations.append(
                        "\(key): job \(job.id) is sent with requestId \(requestID), which GenAuth never accepted: \(describe())")
                    suspects.append(job.id)
                }
            }
        }
        for key in acceptances.keys where groups[key] == nil {
            verdict.violations.append(
                "\(key): GenAuth accepted \(acceptances[key]!.count) SMS for a phone and channel no job has")
        }
        // Each suspect job's calls, as the attempts log has them, to tell a fault from the daemon.
        if !suspects.isEmpty {
            let list = suspects.prefix(40).map(String.init).joined(separator: ",")
            for row in try await database.query(
                """
                SELECT job_id, string_agg(attempt || ' ' || outcome || ' ' || coalesce(status_code::text, '-') || ' '
                       || coalesce(request_id, '-') || ' ' || worker || ' @' || to_char(started_at, 'MI:SS.MS'), ' | '
                       ORDER BY started_at) AS calls
                FROM sms.attempts WHERE job_id IN (\(list)) GROUP BY job_id ORDER BY job_id
                """
            ).rows {
                verdict.violations.append(
                    "  calls of job \((try? row.string("job_id")) ?? ""): \((try? row.string("calls")) ?? "")")
            }
        }
        return verdict
    }
}
