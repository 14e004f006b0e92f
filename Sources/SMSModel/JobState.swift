/// The states of `sms.jobs.state` (CONTRACT.md). The terminal ones never change again.
package enum JobState: String, CaseIterable, Sendable, Codable {
    case pending, running, sent, failed, rejected, expired, superseded, cancelled

    package var isTerminal: Bool { self != .pending && self != .running }
}
