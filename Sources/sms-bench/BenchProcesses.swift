import ArgumentParser
import Foundation

extension Bench {
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

    /// `environment`: more `SMSD_*` settings (e.g. `SMSD_FRAUD_MODE=off`).
    func startDaemon(database: String, sandbox: String, environment extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bin + "/sms-dispatcher")
        process.arguments = ["run"]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SMSD_") }
        environment.merge([
            "SMSD_DATABASE_URL": database, "SMSD_GENAUTH_HOST": sandbox, "SMSD_GENAUTH_APP_ID": "bench",
            "SMSD_CONCURRENCY": String(concurrency), "SMSD_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
            "SMSD_CAPS_PER_PHONE_HOUR": "0", "SMSD_CAPS_PER_PHONE_DAY": "0", "SMSD_LOG_LEVEL": "warning",
        ]) { _, new in new }
        environment.merge(extra) { _, new in new }
        for setting in daemonEnvironment {
            guard let equals = setting.firstIndex(of: "=") else { continue }  // checked in run()
            environment[String(setting[..<equals])] = String(setting[setting.index(after: equals)...])
        }
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
}
