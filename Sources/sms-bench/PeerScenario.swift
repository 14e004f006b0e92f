import ArgumentParser
import Foundation
import PostgresClient

extension Bench {
    struct PeerResult {
        var rate: Double
        /// WAL from the script's start to its end: its own enqueue of the jobs included (it inserts
        /// them itself, then drains), so an upper bound of its per-job cost.
        var walBytesPerJob: Double
        var cpuMicrosecondsPerJob: Double
    }

    /// `../shared/bench/peer_pgqueuer.py` (PgQueuer 1.6, asyncpg) in a venv of its own, made here if
    /// missing. nil, with a line in the output, when the script or the package registry is not there.
    func peerPython() -> String? {
        guard FileManager.default.fileExists(atPath: peerScript) else {
            print("peer: \(peerScript) not found; scenario skipped")
            return nil
        }
        let python = peerVenv + "/bin/python"
        if (try? runToEnd(python, ["-c", "import pgqueuer, asyncpg"]).isEmpty) == true { return python }
        let made = (try? runToEnd("/usr/bin/env", ["python3", "-m", "venv", peerVenv])) ?? "python3 not found"
        guard FileManager.default.fileExists(atPath: python) else {
            print("peer: could not make a venv at \(peerVenv): \(made.prefix(300)); scenario skipped")
            return nil
        }
        // Bounded: pip gives up on an unreachable registry after its timeout and retries.
        let install =
            (try? runToEnd(
                peerVenv + "/bin/pip",
                [
                    "install", "--disable-pip-version-check", "--timeout", "30",
                    "--retries", "2", "pgqueuer==1.6.0", "asyncpg",
                ])) ?? ""
        guard (try? runToEnd(python, ["-c", "import pgqueuer, asyncpg"]).isEmpty) == true else {
            print(
                "peer: pip install pgqueuer==1.6.0 asyncpg failed (is the package registry reachable?): "
                    + String(install.suffix(300)) + "; scenario skipped")
            return nil
        }
        return python
    }

    /// The peer drains `jobs` jobs of its own (the script inserts them) against its own sandbox, on
    /// the same cluster as the daemon's drains, in a database of its own.
    func peerDrain(admin: String, python: String, jobs: Int) async throws -> PeerResult {
        let admin0 = try await PostgresConnection.connect(admin)
        let name = "smsd_peer_\(UInt32.random(in: 0..<UInt32.max))"
        try await admin0.execute("CREATE DATABASE \(name)")
        await admin0.close()
        let dsn = admin[..<admin.lastIndex(of: "/")!] + "/" + name
        let installed = try runToEnd(peerVenv + "/bin/pgq", ["--pg-dsn", dsn, "install"])
        guard installed.contains("Installed") || installed.isEmpty else {
            throw ValidationError("pgq install: \(installed.suffix(400))")
        }
        let sandbox = try await startSandbox(latencyMs: 0)
        defer { sandbox.process.terminate() }
        let db = try await PostgresConnection.connect(dsn)
        defer { Task { await db.close() } }
        let before = try await LoadSnapshot.take(db)
        let backends = BackendCPU()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [peerScript, dsn, String(jobs), sandbox.url]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        defer {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
        let output = Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }
        let started = ContinuousClock.now
        while process.isRunning, ContinuousClock.now - started < .seconds(1800) {
            try await backends.sample(db, database: name, cpu: cpuSeconds)
            try await Task.sleep(for: .milliseconds(250))
        }
        guard !process.isRunning else { throw ValidationError("the peer did not finish within 30 minutes") }
        try await backends.sample(db, database: name, cpu: cpuSeconds)
        process.waitUntilExit()
        let text = String(decoding: await output.value, as: UTF8.self)
        let after = try await LoadSnapshot.take(db)
        let load = try await before.load(to: after, cpu: backends, db)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("pgqueuer_jobs_per_s ") }),
            let rate = Double(line.split(separator: " ")[1])
        else {
            throw ValidationError("peer_pgqueuer.py said: \(text.suffix(600))")
        }
        return PeerResult(
            rate: rate, walBytesPerJob: load.walBytes / Double(jobs),
            cpuMicrosecondsPerJob: load.cpuSeconds / Double(jobs) * 1e6)
    }
}
