/// A phone number that passed validation: what GenAuth is sent. Made once per job by `validate`, and
/// carried from there to the request, so nothing checks or normalises the number a second time.
package struct ValidatedPhone: Sendable, Equatable {
    /// National number, digits only.
    package let number: String
    /// `+CC`; nil for mainland China, which GenAuth assumes when the field is absent.
    package let countryCode: String?

    package static let chinaCountryCode = "+86"
    /// The database's bound on `phone_number` (constraint `jobs_phone_number_length`).
    package static let maximumNumberBytes = 64

    /// What goes in GenAuth's `phoneCountryCode`: nothing for mainland China (`+86` or none).
    package static func sentCountryCode(_ countryCode: String?) -> String? {
        countryCode == chinaCountryCode ? nil : countryCode
    }

    /// Checks a job's phone before anything is sent. A row that fails is `rejected` with the returned
    /// message, which says exactly what is wrong, so the producer can fix it. Messages never repeat the
    /// whole number (it is on the row already; logs must not carry it).
    package static func validate(number: String, countryCode: String?) -> Result<ValidatedPhone, JobRejection> {
        // Bounded before anything is looked at character by character (the database refuses longer
        // values since schema 14: these only catch rows older than that).
        guard number.utf8.count <= maximumNumberBytes else {
            return .failure(JobRejection("phone_number is \(number.utf8.count) bytes long; at most \(maximumNumberBytes)"))
        }
        // Country code: nil (or +86) means mainland China. Its value is not repeated in the message:
        // producers read every job's message, and a number put in this field by mistake would show.
        var code: String? = nil
        if let countryCode {
            guard countryCode.utf8.count <= 16 else {
                return .failure(
                    JobRejection(
                        "phone_country_code is \(countryCode.utf8.count) bytes long; it must be '+' followed by 1 to 4 digits (e.g. +86, +1, +852)"
                    ))
            }
            let scalars = Array(countryCode.unicodeScalars)
            let digits = scalars.dropFirst()
            let problem: String?
            if scalars.first != "+" {
                problem = "it does not start with '+'"
            } else if !digits.allSatisfy(isASCIIDigit) {
                problem = "it has a character other than the digits 0-9 after the '+'"
            } else if !(1...4).contains(digits.count) {
                problem = "it has \(digits.count) digits"
            } else if digits.first == "0" {
                problem = "its first digit is 0"
            } else {
                problem = nil
            }
            if let problem {
                return .failure(
                    JobRejection(
                        "phone_country_code must be '+' followed by 1 to 4 digits, not starting with 0 (e.g. +86, +1, +852); \(problem)"
                    ))
            }
            code = sentCountryCode(countryCode)
        }

        let scalars = Array(number.unicodeScalars)
        guard !scalars.isEmpty else {
            return .failure(JobRejection("phone_number is empty"))
        }
        if let badIndex = scalars.firstIndex(where: { !isASCIIDigit($0) }) {
            let bad = scalars[badIndex]
            let shown =
                bad.properties.isWhitespace || bad.value < 0x20
                ? "U+" + String(bad.value, radix: 16, uppercase: true) : "'\(bad)'"
            return .failure(
                JobRejection(
                    "phone_number contains \(shown) at position \(badIndex + 1); only the digits 0-9 are allowed (the country code goes in phone_country_code)"
                ))
        }

        if let code {
            // E.164 caps the whole number, country code included, at 15 digits.
            let maximum = 15 - (code.count - 1)
            guard (4...maximum).contains(scalars.count) else {
                return .failure(
                    JobRejection(
                        "phone_number has \(scalars.count) digits; a \(code) number must have 4 to \(maximum)"))
            }
        } else {
            guard scalars.count == 11, scalars[0] == "1" else {
                return .failure(
                    JobRejection(
                        "phone_number has \(scalars.count) digits\(scalars[0] == "1" ? "" : " and starts with \(scalars[0])"); a mainland China (+86) mobile number has 11 digits starting with 1"
                    ))
            }
        }
        return .success(ValidatedPhone(number: number, countryCode: code))
    }

    private static func isASCIIDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    /// `13800138000` → `138****8000`: enough to tell numbers apart in a log, not enough to text anyone.
    /// At least four digits are hidden, and of a number shorter than a mainland mobile's (11 digits) at
    /// least half: a 7-digit number shows its last 3 (`****234`), an 8-digit one its last 4.
    package static func masked(_ number: String) -> String {
        let characters = Array(number)
        let n = characters.count
        let hidden = n >= 11 ? max(4, n - 7) : min(n, max(4, (n + 1) / 2))
        let shown = n - hidden
        let tail = min(4, shown)
        let head = min(3, shown - tail)
        return String(characters.prefix(head)) + String(repeating: "*", count: n - head - tail)
            + String(characters.suffix(tail))
    }
}
