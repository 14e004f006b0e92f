import Foundation
import GenAuth
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Synchronization
import Testing
import SMSTestSupport

/// The systemd integration: the unit file's hardening and validity, and the notify protocol as a
/// real daemon speaks it to a socket this test reads.
@Suite("systemd")
struct SystemdTests {
    let unit = TestEnvironment.repositoryRoot.appendingPathComponent("systemd/sms-dispatcher.service").path

    @Test func unitIsHardenedTo1Point2OrBetter() async throws {
        // Only the verdict line comes back through the pipe (the full table is long).
        let result = try await ChildProcess.run(
            "/bin/bash",
            [
                "-c",
                "systemd-analyze security --offline=true \"$0\" </dev/null 2>&1 | grep 'Overall exposure level'", unit,
            ])
        let line = try #require(
            result.output.split(separator: "\n").first { $0.contains("Overall exposure level") },
            "\(result.status): \(result.output)")
        let score = try #require(line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) })
        #expect(score <= 1.2, "\(line)")
    }

    @Test func unitVerifiesClean() async throws {
        let text = try String(contentsOfFile: unit, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/sms-dispatcher", with: TestEnvironment.executable("sms-dispatcher"))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("sms-dispatcher.service").path
        try text.write(toFile: copy, atomically: true, encoding: .utf8)
        let result = try await ChildProcess.run("/usr/bin/systemd-analyze", ["verify", copy])
        #expect(result.status == 0, "\(result.output)")
        #expect(!result.output.lowercased().contains("error"), "\(result.output)")
        #expect(text.contains("Type=notify") && text.contains("WatchdogSec="))
    }

    @Test("READY=1, WATCHDOG=1, STATUS= and STOPPING=1 reach NOTIFY_SOCKET; journal priorities on stderr")
    func notifyProtocol() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let socket = try NotifySocket()
        defer { socket.close() }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000", "JOURNAL_STREAM": "8:12345",
            ])
        defer { Task { await daemon.stop() } }
        let ready = await eventually(timeout: .seconds(15)) {
            socket.drain()
            return socket.messages.contains { $0.contains("READY=1") }
                && socket.messages.contains { $0.contains("WATCHDOG=1") }
                && socket.messages.contains { $0.contains("STATUS=in flight") }
        }
        #expect(ready, "\(socket.messages) \(daemon.output)")
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(timeout: .seconds(20)) == 0)
        socket.drain()
        #expect(socket.messages.contains { $0.contains("STOPPING=1") }, "\(socket.messages)")
        let lines = daemon.output.split(separator: "\n")
        #expect(!lines.isEmpty)
        #expect(
            lines.allSatisfy { $0.hasPrefix("<") && $0.dropFirst().first?.isNumber == true && $0.dropFirst(2).first == ">" },
            "\(daemon.output)")
        #expect(lines.contains { $0.hasPrefix("<5>dispatcher started") })
    }
}

/// A datagram socket bound to a fresh path, standing in for systemd's notification socket.
final class NotifySocket: Sendable {
    let path: String
    private let descriptor: Int32
    private let received = Mutex<[String]>([])

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-notify-\(UUID().uuidString.prefix(8))").path
        descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw TestSetupError("socket() failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw TestSetupError("bind(\(path)) failed: errno \(errno)") }
    }

    var messages: [String] { received.withLock { $0 } }

    /// Reads whatever datagrams are waiting (non-blocking; at most 1,000 per call).
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<1000 {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { return }
            let text = String(decoding: buffer[0..<count], as: UTF8.self)
            received.withLock { $0.append(text) }
        }
    }

    func close() {
        Glibc.close(descriptor)
        unlink(path)
    }
}
