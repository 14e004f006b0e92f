/// A job under one claim: its id and the claim token that claim gave it (`sms.claim_jobs`). Every
/// statement that acts for the holder (lease extension, reservation, write-back) names both, so a
/// job this process no longer holds under this claim cannot be touched by it.
package struct JobLease: Sendable, Hashable {
    package let id: Int64
    package let token: Int64

    package init(id: Int64, token: Int64) {
        self.id = id
        self.token = token
    }
}
