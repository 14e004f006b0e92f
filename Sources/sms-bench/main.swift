import ArgumentParser
import AsyncHTTPClient
import Foundation
import Synchronization
import NIOCore
import PostgresClient
import SMSDispatcherCore

/// `make bench`: runs the release `sms-dispatcher` against the release `genauth-sandbox` and a throwaway
/// PostgreSQL (started by scripts/with-postgres.sh), scenario by scenario, and prints one table.
/// Figures, not assertions: nothing here fails on a slow machine.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sms-bench",
                                                    abstract: "Throughput, latency and memory of sms-dispatcher.")

    @Option(help: "Folder with the release sms-dispatcher and genauth-sandbox.") var bin: String
    @Option(help: "Jobs per drain.") var jobs = 100_000
    @Option(help: "The daemon's calls in flight.") var concurrency = 64
    @Option(help: "Comma-separated: drain,ceiling,client,latency,slow,history,growth")
    var scenarios = "drain,ceiling,client,latency,slow,history,growth"
    @Option(name: .customLong("growth-jobs"), help: "Jobs in the memory-growth drain.") var growthJobs = 1_000_000
    @Option(name: .customLong("history-rows"), help: "Finished rows in the table for the history drain.") var historyRows = 5_000_000
    @Option(name: .customLong("latency-seconds"), help: "How long the 500/s latency run lasts.") var latencySeconds = 10
    @Option(help: "Runs of drain and ceiling, alternated; the median is reported (this VM's figures vary by ±10%).")
    var repeats = 3
    @Flag(help: "Small numbers, for a CI smoke run.") var quick = false

    mutating func run() async throws {
        if quick {
            jobs = min(jobs, 5_000)
            historyRows = min(historyRows, 50_000)
            growthJobs = min(growthJobs, 20_000)
            repeats = 1
            latencySeconds = min(latencySeconds, 3)
        }
        guard let admin = ProcessInfo.processInfo.environment["SMSD_TEST_ADMIN_URL"] else {
            throw ValidationError("run under scripts/with-postgres.sh (make bench)")
        }
        let wanted = Set(scenarios.split(separator: ",").map(String.init))
        var rows: [[String]] = []
        let machine = "\(ProcessInfo.processInfo.activeProcessorCount) cores, "
            + "\(ProcessInfo.processInfo.physicalMemory / 1_073_741_824) GiB"
        print("sms-bench: \(jobs) jobs, concurrency \(concurrency), \(machine)")

        // Drain and ceiling alternate, so both see the machine in the same moods; medians are compared.
        var drains: [DrainResult] = []
        var ceilings: [Double] = []
        for _ in 0..<max(1, repeats) {
            if wanted.contains("drain") { drains.append(try await drain(admin: admin, jobs: jobs, latencyMs: 0, history: 0)) }
            if wanted.contains("ceiling") { ceilings.append(try await pgbenchCeiling(admin: admin, jobs: jobs)) }
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        func runs(_ values: [Double]) -> String {
            values.count < 2 ? "" : " (runs: " + values.map { String(format: "%.0f", $0) }.joined(separator: ", ") + ")"
        }
        var drainRate: Double? = nil
        if !drains.isEmpty {
            let result = drains.sorted { $0.rate < $1.rate }[drains.count / 2]
            drainRate = result.rate
            rows.append(["drain", "\(jobs) jobs, API 0 ms", String(format: "%.0f jobs/s", result.rate) + runs(drains.map(\.rate)),
                         String(format: "peak RSS %.1f MB; CPU %.0f%% of a core (%.0f%% per 10k jobs/s)",
                                drains.map(\.peakRSSMB).max() ?? 0, result.cpuPercent,
                                result.cpuPercent / max(result.rate / 10_000, 0.0001))])
        }
        if !ceilings.isEmpty {
            let ceiling = median(ceilings)
            let fraction = drainRate.map { String(format: "drain = %.2f × ceiling", $0 / ceiling) } ?? ""
            rows.append(["ceiling", "the daemon's claim, reserve, write-back SQL by pgbench, no HTTP",
                         String(format: "%.0f jobs/s", ceiling) + runs(ceilings), fraction])
        }
        if wanted.contains("client") {
            let floor = try await clientFloor(calls: jobs)
            rows.append(["client", "\(jobs) calls, GenAuthClient alone, no database", String(format: "%.0f calls/s", floor.rate),
                         String(format: "CPU %.0f µs per call (%.0f%% of a core per 10k calls/s): the HTTP client's share", floor.microseconds,
                                floor.microseconds)])
        }
        if wanted.contains("latency") {
            let latency = try await latencyRun(admin: admin, perSecond: 500, seconds: latencySeconds)
            rows.append(["latency", "one INSERT at a time, 500/s for \(latencySeconds) s", String(format: "p50 %.1f ms", latency.p50),
                         String(format: "p99 %.1f ms, max %.1f ms (insert → API call)", latency.p99, latency.max)])
        }
        if wanted.contains("slow") {
            let count = min(jobs, quick ? 1_000 : 6_000)
            let result = try await drain(admin: admin, jobs: count, latencyMs: 200, history: 0)
            let bound = Double(concurrency) / 0.2
            rows.append(["slow API", "\(count) jobs, API 200 ms", String(format: "%.0f jobs/s", result.rate),
                         String(format: "%.0f%% of concurrency/latency (%.0f/s)", result.rate / bound * 100, bound)])
        }
        if wanted.contains("history") {
            let result = try await drain(admin: admin, jobs: jobs, latencyMs: 0, history: historyRows)
            let share = drainRate.map { String(format: "%.0f%% of the empty-table drain", result.rate / $0 * 100) } ?? ""
            rows.append(["history", "\(jobs) jobs, \(historyRows) finished rows", String(format: "%.0f jobs/s", result.rate),
                         share + String(format: "; peak RSS %.1f MB", result.peakRSSMB)])
        }
        if wanted.contains("growth") {
            let result = try await drain(admin: admin, jobs: growthJobs, latencyMs: 0, history: 0)
            let samples = result.rssByProgress.map { String(format: "%.1f", $0) }.joined(separator: " / ")
            rows.append(["growth", "\(growthJobs) jobs, API 0 ms", String(format: "%.0f jobs/s", result.rate),
                         "RSS MB at 10/25/50/75/100% of the drain: \(samples); peak " + String(format: "%.1f MB", result.peakRSSMB)])
        }
        print(table(["scenario", "setup", "result", "notes"], rows))
    }

    // MARK: - Scenarios

    struct DrainResult {
        var rate: Double
        var peakRSSMB: Double
        var cpuPercent: Double
        /// Resident set size when 10, 25, 50, 75 and 100% of the jobs were done: growth shows here.
        var rssByProgress: [Double]
    }

    func drain(admin: String, jobs: Int, latencyMs: Int, history: Int) async throws -> DrainResult {
        let database = try await freshDatabase(admin: admin)
        let db = try await PostgresConnection.connect(database)
        if history > 0 {
            // Finished rows in bulk, as months of production would leave them.
            try await db.query("""
                INSERT INTO sms.jobs (channel, phone_number, state, attempts, status_code, request_id, created_at, sent_at, finished_at)
                SELECT 'CHANNEL_LOGIN', '150' || lpad(g::text, 8, '0'), 'sent', 1, 200, md5(g::text),
                       now() - interval '2 days', now() - interval '2 days', now() - interval '2 days'
                FROM generate_series(1, \(history)) g
                """)
            try await db.execute("VACUUM ANALYZE sms.jobs")
        }
        try await db.query("""
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '13' || lpad(g::text, 9, '0') FROM generate_series(1, \(jobs)) g
            """)
        let sandbox = try await startSandbox(latencyMs: latencyMs)
        defer { sandbox.process.terminate() }
        let daemon = try startDaemon(database: database, sandbox: sandbox.url)
        defer { stop(daemon) }
        let started = ContinuousClock.now
        let cpuBefore = cpuSeconds(daemon.processIdentifier)
        var peakRSS = 0.0
        let marks = [0.10, 0.25, 0.50, 0.75]
        var rssByProgress: [Double] = []
        var polls = 0
        while ContinuousClock.now - started < .seconds(1800) {
            try await Task.sleep(for: .milliseconds(250))
            polls += 1
            peakRSS = max(peakRSS, rssMB(daemon.processIdentifier, field: "VmHWM:"))
            // Counting 100,000 open jobs four times a second would take CPU from what is measured:
            // a cheap "any left?" each time, the count every 2 s (for the RSS marks).
            let anyLeft = try await db.query("""
                SELECT EXISTS (SELECT 1 FROM sms.jobs WHERE state IN ('pending', 'running')) AS any
                """).first?.bool("any") ?? true
            let left = !anyLeft ? 0 : polls % 8 != 0 ? jobs
                : try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state IN ('pending', 'running')").first?.int("n") ?? 0
            while rssByProgress.count < marks.count, Double(jobs - left) >= marks[rssByProgress.count] * Double(jobs) {
                rssByProgress.append(rssMB(daemon.processIdentifier, field: "VmRSS:"))
            }
            if left == 0 {
                rssByProgress.append(rssMB(daemon.processIdentifier, field: "VmRSS:"))
                break
            }
            guard daemon.isRunning else { throw ValidationError("the daemon died") }
        }
        let cpuAfter = cpuSeconds(daemon.processIdentifier)
        // First call to last write-back, by the database's clock (both ends by index: the history
        // rows have no attempts and finished days ago).
        let span = try await db.query("""
            SELECT extract(epoch FROM (SELECT max(finished_at) FROM sms.jobs)
                                      - (SELECT min(started_at) FROM sms.attempts))::float8 AS seconds
            """).first?.double("seconds") ?? 1
        await db.close()
        let wall = (ContinuousClock.now - started)
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        return DrainResult(rate: Double(jobs) / max(span, 0.001), peakRSSMB: peakRSS,
                           cpuPercent: (cpuAfter - cpuBefore) / max(min(span, wallSeconds), 0.001) * 100,
                           rssByProgress: rssByProgress)
    }

    /// The daemon's own statements (claim, reservation, write-back: `JobStore`'s SQL text, placeholders
    /// filled in), run by pgbench on two connections with no HTTP in between: what PostgreSQL on this
    /// machine allows for the daemon's database work, every job sent on its first call.
    func pgbenchCeiling(admin: String, jobs: Int) async throws -> Double {
        let database = try await freshDatabase(admin: admin)
        let db = try await PostgresConnection.connect(database)
        try await db.query("""
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '13' || lpad(g::text, 9, '0') FROM generate_series(1, \(jobs)) g
            """)
        await db.close()
        let batch = concurrency
        func oneLine(_ sql: String, _ parameters: [String]) -> String {
            var sql = sql.split(separator: "\n").map { $0.split(separator: "--", maxSplits: 1, omittingEmptySubsequences: false)[0] }
                .joined(separator: " ")
            // Highest first, so $1 does not eat the start of $17.
            for (index, value) in parameters.enumerated().reversed() { sql = sql.replacingOccurrences(of: "$\(index + 1)", with: value) }
            return sql
        }
        let claim = oneLine(JobStore.claimSQL, ["'bench'", "\(batch)", "30"])
        let each = { (value: String) in "array_fill(\(value), ARRAY[:n])" }
        let script = """
            SELECT quote_literal(COALESCE(array_agg(id), '{}')::text) AS ids, quote_literal(COALESCE(array_agg(lease_token), '{}')::text) AS tokens, quote_literal(COALESCE(array_agg(phone_key), '{}')::text) AS keys, quote_literal(COALESCE(array_agg(channel), '{}')::text) AS channels, count(*) AS n FROM (\(claim)) claimed \\gset
            \(oneLine(JobStore.reserveSQL, [":ids::bigint[]", ":tokens::bigint[]", ":keys::text[]", ":channels::text[]", "60", "0", "0", "0"]));
            \(oneLine(JobStore.completeSQL, ["'bench'", ":ids::bigint[]", ":tokens::bigint[]", each("'sent'::text"), each("1"), each("200"),
                                             each("200"), each("NULL::int"), each("''::text"), each("md5(random()::text)"),
                                             each("0::float8"), each("0::float8"), each("0::float8"), each("'sent'::text"),
                                             each("''::text"), each("NULL::float8"), each("1"), each("0"), "60"]));

            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-bench-\(UUID().uuidString).sql").path
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let pgbench = try pgbenchPath()
        let transactions = max(1, jobs / batch / 2)
        let output = try runToEnd(pgbench, ["-n", "-c", "2", "-j", "2", "-t", String(transactions), "-f", file, database])
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("tps =") }),
              let tps = line.split(separator: " ").dropFirst(2).first.flatMap({ Double($0) })
        else { throw ValidationError("pgbench said: \(output)") }
        // Jobs per transaction as they really were (a statement that failed would show here).
        let check = try await PostgresConnection.connect(database)
        let sent = try await check.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'sent'").first?.int("n") ?? 0
        await check.close()
        guard sent > 0 else { throw ValidationError("pgbench sent nothing: \(output)") }
        return tps * Double(sent) / Double(transactions * 2)
    }

    /// The daemon's HTTP client on its own (same `GenAuthClient`, same concurrency, no database): what
    /// one call costs this process in CPU, i.e. the floor under the daemon's CPU per job.
    func clientFloor(calls: Int) async throws -> (rate: Double, microseconds: Double) {
        let sandbox = try await startSandbox(latencyMs: 0)
        defer { sandbox.process.terminate() }
        var config = DispatcherConfig()
        config.genauthHost = sandbox.url
        config.appID = "bench"
        config.concurrency = concurrency
        let client = try GenAuthClient(config: config)
        let cpuBefore = cpuSeconds(getpid())
        let started = ContinuousClock.now
        let perTask = max(1, calls / concurrency)
        // As the daemon calls it: `start` with completions, `concurrency` calls in flight, each
        // completion starting that slot's next call.
        let remaining = Atomic(perTask * concurrency)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            @Sendable func call(_ worker: Int, _ index: Int) {
                let request = SendSMSRequest(channel: "CHANNEL_LOGIN",
                                             phoneNumber: "16" + String(format: "%09d", worker * perTask + index),
                                             phoneCountryCode: nil)
                client.start([GenAuthClient.PendingCall(request: request) { _ in
                    if remaining.subtract(1, ordering: .relaxed).newValue == 0 { done.resume() }
                    if index + 1 < perTask { call(worker, index + 1) }
                }])
            }
            for worker in 0..<concurrency { call(worker, 0) }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu = cpuSeconds(getpid()) - cpuBefore
        await client.shutdown()
        let made = perTask * concurrency
        return (Double(made) / seconds, cpu / Double(made) * 1e6)
    }

    func latencyRun(admin: String, perSecond: Int, seconds: Int) async throws -> (p50: Double, p99: Double, max: Double) {
        let database = try await freshDatabase(admin: admin)
        let sandbox = try await startSandbox(latencyMs: 0)
        defer { sandbox.process.terminate() }
        let daemon = try startDaemon(database: database, sandbox: sandbox.url)
        defer { stop(daemon) }
        let db = try await PostgresConnection.connect(database)
        try await Task.sleep(for: .seconds(1))  // the daemon is up and listening
        let total = perSecond * seconds
        let start = ContinuousClock.now
        for index in 0..<total {
            let due = start + .nanoseconds(Int64(index) * 1_000_000_000 / Int64(perSecond))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            try await db.query("INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', $1)",
                               ["14" + String(format: "%09d", index)], prepared: true)
        }
        for _ in 0..<240 {
            let left = try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state IN ('pending', 'running')").first?.int("n") ?? 0
            if left == 0 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let created = try await db.query("SELECT phone_number, extract(epoch FROM created_at)::float8 AS t FROM sms.jobs").rows
        await db.close()
        var insertedAt: [String: Double] = [:]
        for row in created { insertedAt[try row.requiredString("phone_number")] = try row.double("t") }
        let report = try await sandboxReport(sandbox.url)
        var latencies = report.compactMap { send -> Double? in
            insertedAt[send.phoneNumber].map { (send.at - $0) * 1000 }
        }.sorted()
        guard !latencies.isEmpty else { throw ValidationError("no sends measured") }
        latencies = latencies.map { max(0, $0) }
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        return (percentile(0.5), percentile(0.99), latencies.last!)
    }

    // MARK: - Processes and helpers

    func freshDatabase(admin: String) async throws -> String {
        let connection = try await PostgresConnection.connect(admin)
        let name = "smsd_bench_\(UInt32.random(in: 0..<UInt32.max))"
        try await connection.execute("CREATE DATABASE \(name)")
        await connection.close()
        let url = admin[..<admin.lastIndex(of: "/")!] + "/" + name
        let migrate = try runToEnd(bin + "/sms-dispatcher", ["migrate", "--sql-dir", "sql"], environment: ["SMSD_DATABASE_URL": url])
        guard migrate.contains("schema is at version") else { throw ValidationError("migrate: \(migrate)") }
        return url
    }

    func startSandbox(latencyMs: Int) async throws -> (process: Process, url: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bin + "/genauth-sandbox")
        process.arguments = ["--port", "0", "--latency-ms", String(latencyMs)]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { throw ValidationError("genauth-sandbox did not start") }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let url = text.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) else {
            throw ValidationError("genauth-sandbox said: \(text)")
        }
        return (process, url)
    }

    func startDaemon(database: String, sandbox: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bin + "/sms-dispatcher")
        process.arguments = ["run"]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SMSD_") }
        environment.merge([
            "SMSD_DATABASE_URL": database, "SMSD_GENAUTH_HOST": sandbox, "SMSD_GENAUTH_APP_ID": "bench",
            "SMSD_CONCURRENCY": String(concurrency), "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
            "SMSD_CAPS_PER_PHONE_HOUR": "0", "SMSD_CAPS_PER_PHONE_DAY": "0", "SMSD_LOG_LEVEL": "warning",
        ]) { _, new in new }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.standardError
        try process.run()
        return process
    }

    /// SIGTERM, then wait for the drain, so the daemon is gone before its database.
    func stop(_ daemon: Process) {
        daemon.terminate()
        daemon.waitUntilExit()
    }

    struct Send: Decodable {
        let phoneNumber: String
        let at: Double
    }

    func sandboxReport(_ url: String) async throws -> [Send] {
        struct Report: Decodable { let accepted: [Send] }
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/__sandbox/sends"), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 512 * 1024 * 1024)
        return try JSONDecoder().decode(Report.self, from: Data(body.readableBytesView)).accepted
    }

    func pgbenchPath() throws -> String {
        let candidates = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted().reversed()
            .map { "/usr/lib/postgresql/\($0)/bin/pgbench" } ?? []
        guard let path = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw ValidationError("pgbench not found (Debian's postgresql package ships it)")
        }
        return path
    }

    func runToEnd(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SMSD_") }
        env.merge(environment) { _, new in new }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    func rssMB(_ pid: Int32, field: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kb = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        else { return 0 }
        return kb / 1024
    }

    func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command name.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            "| " + cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |"
        }
        return ([line(header), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
            + rows.map(line)).joined(separator: "\n")
    }
}
