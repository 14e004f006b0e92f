/// The states of `sms.jobs.state` (CONTRACT.md). The terminal ones never change again.
public enum JobState: String, CaseIterable, Sendable, Codable {
    case pending, running, sent, failed, rejected, expired, superseded, cancelled

    public var isTerminal: Bool { self != .pending && self != .running }
}
