/// The GenAuth send-SMS channels: exactly the eleven the API accepts (also the `sms.jobs` CHECK).
package enum Channel: String, CaseIterable, Sendable, Codable {
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

extension Channel {
    /// A job's `channel` column, checked: the row's CHECK allows only these, but a row written before
    /// it (or with it dropped) is rejected with a message naming the valid ones.
    package static func parse(_ raw: String) -> Result<Channel, JobRejection> {
        if let channel = Channel(rawValue: raw) { return .success(channel) }
        return .failure(
            JobRejection(
                "channel \"\(raw.prefix(64))\" is not a GenAuth channel; expected one of "
                    + Channel.allCases.map(\.rawValue).joined(separator: ", ")))
    }
}
