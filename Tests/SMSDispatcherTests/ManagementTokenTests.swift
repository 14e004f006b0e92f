@testable import SMSDispatcherCore
import Testing

@Suite("Management token")
struct ManagementTokenTests {
    @Test("any expires_in GenAuth sends gives a validity between zero and a day, refreshed before expiry")
    func validityNeverTraps() {
        #expect(ManagementTokenProvider.validity(expiresIn: 7200) == .seconds(7140))
        #expect(ManagementTokenProvider.validity(expiresIn: 100) == .seconds(90))
        for odd in [0, -5, 1e300, .infinity, -.infinity, .nan, .greatestFiniteMagnitude] as [Double] {
            let validity = ManagementTokenProvider.validity(expiresIn: odd)
            #expect(validity >= .zero && validity <= .seconds(86_400), "\(odd): \(validity)")
        }
        #expect(ManagementTokenProvider.validity(expiresIn: 1e300) == .seconds(86_340))
    }
}
