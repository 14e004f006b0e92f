import Testing

@testable import SMSModel

@Suite("Phone validation")
struct ValidatedPhoneTests {
    @Test(
        "valid numbers pass; +86 is sent as no country code",
        arguments: [
            ("13800138000", nil as String?, "13800138000", nil as String?),
            ("19912345678", "+86", "19912345678", nil),
            ("5551234567", "+1", "5551234567", "+1"),
            ("91234567", "+852", "91234567", "+852"),
            ("2079460000", "+44", "2079460000", "+44"),
        ])
    func accepts(number: String, code: String?, sentNumber: String, sentCode: String?) throws {
        let phone = try ValidatedPhone.validate(number: number, countryCode: code).get()
        #expect(phone == ValidatedPhone(number: sentNumber, countryCode: sentCode))
    }

    @Test(
        "invalid numbers are rejected with a message saying what is wrong",
        arguments: [
            ("", nil as String?, "is empty"),
            ("138-0013-8000", nil, "contains '-' at position 4"),
            ("138 0013 8000", nil, "contains U+20 at position 4"),
            ("１３８００１３８０００", nil, "contains '１' at position 1"),
            ("+8613800138000", nil, "contains '+' at position 1"),
            ("1380013800", nil, "has 10 digits"),
            ("23800138000", nil, "starts with 2"),
            ("1380013800012", "+86", "has 13 digits"),
            ("1234567890123456789012345678901234567890", "+1", "has 40 digits"),
            ("123", "+1", "has 3 digits"),
            ("13800138000", "86", "must be '+' followed by 1 to 4 digits"),
            ("13800138000", "+12345", "must be '+' followed by 1 to 4 digits"),
            ("13800138000", "+0", "not starting with 0"),
            ("13800138000", "+8a", "must be '+' followed"),
            // Issue 26: swapped fields must not publish a number through the message producers read.
            ("+86", "13800138000", "does not start with '+'"),
            ("86", "+8613800138000", "it has 13 digits"),
            (String(repeating: "1", count: 65), nil, "65 bytes long; at most 64"),
            ("13800138000", String(repeating: "+", count: 17), "17 bytes long"),
        ])
    func rejects(number: String, code: String?, expected: String) {
        guard case .failure(let error) = ValidatedPhone.validate(number: number, countryCode: code) else {
            Issue.record("\(number) \(code ?? "nil") should be rejected")
            return
        }
        #expect(error.message.contains(expected), "\(error.message)")
        // The message must not repeat a whole valid-looking number (it would end up in logs).
        if number.count >= 7 { #expect(!error.message.contains(number)) }
        if let code, code.count >= 4 { #expect(!error.message.contains(code.dropFirst())) }
    }

    @Test func masking() {
        #expect(ValidatedPhone.masked("13800138000") == "138****8000")
        // Issue 26: a short number is never shown whole, nor nearly (7 of 8 digits were).
        #expect(ValidatedPhone.masked("5551234") == "****234")
        #expect(ValidatedPhone.masked("55512345") == "****2345")
        #expect(ValidatedPhone.masked("5551234567") == "5*****4567")
        #expect(ValidatedPhone.masked("12345") == "****5")
        #expect(ValidatedPhone.masked("1234") == "****")
        for length in 4...15 {
            let number = String((0..<length).map { _ in "7" })
            let hidden = ValidatedPhone.masked(number).filter { $0 == "*" }.count
            #expect(hidden >= 4 && (length >= 11 || hidden * 2 >= length), "\(length) digits: \(hidden) hidden")
        }
        #expect(!ValidatedPhone.masked("13800138000").contains("0013"))
    }
}
