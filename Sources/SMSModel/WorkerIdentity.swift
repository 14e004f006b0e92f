import Foundation

/// Who this daemon is, in `locked_by` and `sms.workers`.
package struct WorkerIdentity: Sendable {
    /// The configured `worker.id`, or `<host>-<pid>-<random>`: what `locked_by` and `sms.workers` show.
    package let id: String
    /// Random per process, whatever the id: two processes started with one `worker.id` (or one
    /// restarted under it) are still two workers.
    package let instance: String
    package let host: String
    package let pid: Int32

    package init(id: String, instance: String = WorkerIdentity.randomInstance(), host: String, pid: Int32) {
        self.id = id
        self.instance = instance
        self.host = host
        self.pid = pid
    }

    package static func make(configured: String?) -> WorkerIdentity {
        let host = ProcessInfo.processInfo.hostName
        let pid = ProcessInfo.processInfo.processIdentifier
        let instance = randomInstance()
        return WorkerIdentity(id: configured ?? "\(host)-\(pid)-\(instance.prefix(8))", instance: instance, host: host, pid: pid)
    }

    package static func randomInstance() -> String {
        let value = UInt64.random(in: 0...UInt64.max)
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
