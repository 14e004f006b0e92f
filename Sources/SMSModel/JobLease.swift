/// A job under one claim: its id and the claim token that claim gave it (`sms.claim_jobs`). Every
/// statement that acts for the holder (lease extension, reservation, write-back) names both, so a
/// job this process no longer holds under this claim cannot be touched by it.
public struct JobLease: Sendable, Hashable {
    public let id: Int64
    public let token: Int64

    public init(id: Int64, token: Int64) {
        self.id = id
        self.token = token
    }
}
