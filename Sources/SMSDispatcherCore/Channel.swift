/// The GenAuth send-SMS channels: exactly the eleven the API accepts (also the `sms.jobs` CHECK).
public enum Channel: String, CaseIterable, Sendable, Codable {
    case login = "CHANNEL_LOGIN"
    case register = "CHANNEL_REGISTER"
    case resetPassword = "CHANNEL_RESET_PASSWORD"
    case bindPhone = "CHANNEL_BIND_PHONE"
    case unbindPhone = "CHANNEL_UNBIND_PHONE"
    case bindMFA = "CHANNEL_BIND_MFA"
    case verifyMFA = "CHANNEL_VERIFY_MFA"
    case unbindMFA = "CHANNEL_UNBIND_MFA"
    case completePhone = "CHANNEL_COMPLETE_PHONE"
    case identityVerification = "CHANNEL_IDENTITY_VERIFICATION"
    case deleteAccount = "CHANNEL_DELETE_ACCOUNT"
}

/// The states of `sms.jobs.state` (CONTRACT.md). The terminal ones never change again.
public enum JobState: String, CaseIterable, Sendable, Codable {
    case pending, running, sent, failed, rejected, expired, superseded, cancelled

    public var isTerminal: Bool { self != .pending && self != .running }
}
