import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// systemd's notification protocol (sd_notify): datagrams like `READY=1` to the socket in
/// `$NOTIFY_SOCKET`. Hand-written: it is one `sendto`, and no ecosystem package here wraps it
/// (linking libsystemd for it would tie the binary to systemd's library).
package final class SystemdNotifier: Sendable {
    private let socketPath: String?
    /// Half of `$WATCHDOG_USEC`: how often the watchdog must hear from us; nil when it is off.
    package let watchdogInterval: Duration?
    private let lastWatchdog = Mutex(ContinuousClock.now - .seconds(3600))

    package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        self.socketPath = path
        if path != nil, let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            self.watchdogInterval = .microseconds(usec / 2)
        } else {
            self.watchdogInterval = nil
        }
    }

    package var isEnabled: Bool { socketPath != nil }

    package func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    package func stopping(status: String) { send("STOPPING=1\nSTATUS=\(status)") }
    package func status(_ text: String) { send("STATUS=\(text)") }

    /// A reload begins (`Type=notify` with `ExecReload=`, or `Type=notify-reload`): systemd wants the
    /// time on CLOCK_MONOTONIC with it, and `ready(status:)` when the reload is over.
    package func reloading(status: String) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000
        send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)\nSTATUS=\(status)")
    }

    /// Called from the dispatch loop every round; sends `WATCHDOG=1` at most every half watchdog period,
    /// so a wedged loop stops feeding it and systemd restarts the service.
    package func watchdog() {
        guard let interval = watchdogInterval else { return }
        let due = lastWatchdog.withLock { last -> Bool in
            let now = ContinuousClock.now
            guard now - last >= interval / 2 else { return false }
            last = now
            return true
        }
        if due { send("WATCHDOG=1") }
    }

    func send(_ message: String) {
        guard let path = socketPath else { return }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // A leading '@' names an abstract socket: a NUL byte in the address.
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        _ = message.withCString { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(descriptor, text, strlen(text), Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
    }
}
