import Foundation
import Synchronization

/// A real child process (a daemon, the sandbox, a CLI command) with its output captured.
package final class ChildProcess: Sendable {
    package let process: Process
    private final class Buffer: Sendable {
        let text = Mutex("")
        let ended = Mutex(false)
    }
    private let captured = Buffer()

    package var output: String { captured.text.withLock { $0 } }

    package init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // Start from a clean slate of SMSD_ variables so the developer's own never leak into a test.
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SMSD_") }
        env.merge(environment) { _, new in new }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        self.process = process
        try process.run()
        // A thread of its own reads the pipe to its end, with blocking reads: no dispatch source on the
        // descriptor. With `readabilityHandler`, libdispatch on Linux crashed the whole test process
        // once (a bad pointer in `_dispatch_event_loop_drain`): a finished child's pipe was closed while
        // its source was still being torn down, and the descriptor's number came back for another.
        let reading = pipe.fileHandleForReading
        Thread { [captured] in
            while true {
                let data = reading.availableData
                if data.isEmpty { break }
                captured.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
            captured.ended.withLock { $0 = true }
        }.start()
    }

    package var isRunning: Bool { process.isRunning }
    package var pid: Int32 { process.processIdentifier }

    package func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for exit up to `timeout`; returns the exit status, or nil if it is still running.
    package func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let exited = await eventually(timeout: timeout) { !process.isRunning }
        guard exited else { return nil }
        // The reader may still be draining the pipe: wait for its end (bounded, as a
        // grandchild may hold the pipe open).
        _ = await eventually(timeout: .seconds(3)) { captured.ended.withLock { $0 } }
        return process.terminationStatus
    }

    /// Stops it for good (SIGKILL) if it is still running.
    package func stop() async {
        if process.isRunning {
            signal(SIGKILL)
            _ = await waitForExit(timeout: .seconds(10))
        }
    }

    /// Runs a command to completion (bounded) and returns its status and output.
    package static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> (status: Int32, output: String) {
        let child = try ChildProcess(executable, arguments, environment: environment)
        guard let status = await child.waitForExit(timeout: timeout) else {
            await child.stop()
            throw TestSetupError("\(executable) \(arguments) did not finish within \(timeout)")
        }
        return (status, child.output)
    }
}
