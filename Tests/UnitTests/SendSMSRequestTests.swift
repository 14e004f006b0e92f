import Foundation
import SMSModel
import Testing

@testable import GenAuth

@Suite("Send-SMS request")
struct SendSMSRequestTests {
    @Test("the JSON body matches what JSONEncoder would send, for any string")
    func jsonBody() throws {
        let awkward = ["plain", "quote\"d", "back\\slash", "new\nline\ttab\r", "\u{0}\u{1f}\u{7f}", "中文 ✓ 🚀", "", "</script>"]
        for value in awkward {
            for code in [nil, value] {
                let request = SendSMSRequest(channel: value, phoneNumber: value, phoneCountryCode: code)
                let bytes = Data(request.jsonBody().readableBytesView)
                let decoded = try JSONDecoder().decode([String: String].self, from: bytes)
                var expected = ["channel": value, "phoneNumber": value]
                if let code { expected["phoneCountryCode"] = code }
                #expect(decoded == expected, "\(value.debugDescription)")
            }
        }
    }

    @Test("a triaged job's request carries its validated phone: no country code for +86")
    func fromAValidJob() throws {
        let claimed = ClaimedJob(
            id: 1, channel: "CHANNEL_VERIFY_MFA", phoneNumber: "13800138000", phoneCountryCode: "+86",
            attempts: 0, maxAttempts: 5)
        let phone = try ValidatedPhone.validate(number: claimed.phoneNumber, countryCode: claimed.phoneCountryCode).get()
        let request = SendSMSRequest(ValidJob(claimed: claimed, channel: .verifyMFA, phone: phone, rule: ChannelRule()))
        #expect(request == SendSMSRequest(channel: "CHANNEL_VERIFY_MFA", phoneNumber: "13800138000", phoneCountryCode: nil))
        #expect(String(buffer: request.jsonBody()) == #"{"channel":"CHANNEL_VERIFY_MFA","phoneNumber":"13800138000"}"#)
    }
}
