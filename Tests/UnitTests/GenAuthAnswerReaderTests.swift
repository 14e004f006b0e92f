import Foundation
import Testing

@testable import GenAuth

@Suite("GenAuth answer reader")
struct GenAuthAnswerReaderTests {
    static let seeds = [
        #"{"statusCode":200,"message":"ok","requestId":"abc"}"#,
        #"{"statusCode":200,"message":"发送成功","apiCode":0,"requestId":"r-1","data":{"success":true,"list":[1,-2.5e3,"x",null,{},[]]}}"#,
        " { \"statusCode\" : 429 ,\n\t\"message\" : null , \"apiCode\" : null } ",
        #"{"statusCode":400,"message":"phone \"x\" is bad","apiCode":40001}"#,
        #"{"statusCode":200.0}"#, #"{"statusCode":"200"}"#, #"{"statusCode":200,"statusCode":500}"#,
        #"{"message":"no code"}"#, #"{}"#, #"[]"#, "", "null", #"{"statusCode":200,}"#, #"{"statusCode":01}"#,
        #"{"statusCode":200} x"#, #"{"statusCode":200,"data":{"a":tru}}"#, #"{"statusCode":-0}"#,
        #"{"statusCode":123456789012345678901}"#, #"{"statusCode":2e2}"#, #"{"statusCode":200,"data":[1,2,]}"#,
        #"{"statusCode":200,"message":"a\u00e9b"}"#, #"{"statusCode":200,"k\"ey":1}"#,
    ]

    @Test("the fast path reads the common answers")
    func commonAnswersTakeTheFastPath() {
        for seed in Self.seeds.prefix(3) {
            #expect(Array(seed.utf8).withUnsafeBytes { GenAuthResponseBody.fastRead($0) } != nil, "\(seed)")
        }
        let body = Array(Self.seeds[1].utf8).withUnsafeBytes { GenAuthResponseBody.fastRead($0) }
        #expect(body == GenAuthResponseBody(statusCode: 200, message: "发送成功", apiCode: 0, requestId: "r-1"))
    }

    @Test("Retry-After: delta seconds or an HTTP date")
    func retryAfterHeader() {
        #expect(GenAuthClient.parseRetryAfter("7") == 7)
        #expect(GenAuthClient.parseRetryAfter(" 2.5 ") == 2.5)
        #expect(GenAuthClient.parseRetryAfter("soon") == nil)
        #expect(
            GenAuthClient.parseRetryAfter("inf") == nil && GenAuthClient.parseRetryAfter("1e400") == nil, "no hint of forever")
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let inTen = formatter.string(from: Date().addingTimeInterval(10))
        let parsed = GenAuthClient.parseRetryAfter(inTen)
        #expect(parsed != nil && parsed! > 7 && parsed! <= 10)
    }

    @Test("on every input the result is JSONDecoder's; where the fast path answers, it agrees")
    func agreesWithJSONDecoder() {
        // The seeds, every prefix of each, and 300 single-byte mutations of each (fixed seed).
        var inputs = Self.seeds.map { Array($0.utf8) }
        var random = SplitMix(state: 0x5EED)
        let specials = Array("{}[]\",:09-.eE+ntfl\\ \n".utf8) + [0xff, 0xe4, 0x00]
        for seed in Self.seeds {
            let bytes = Array(seed.utf8)
            for cut in 0..<bytes.count { inputs.append(Array(bytes[..<cut])) }
            guard !bytes.isEmpty else { continue }
            for _ in 0..<300 {
                var mutated = bytes
                mutated[Int.random(in: 0..<bytes.count, using: &random)] = specials.randomElement(using: &random)!
                inputs.append(mutated)
            }
        }
        var fast = 0
        for input in inputs {
            let expected = try? JSONDecoder().decode(GenAuthResponseBody.self, from: Data(input))
            if let read = input.withUnsafeBytes({ GenAuthResponseBody.fastRead($0) }) {
                fast += 1
                #expect(read == expected, "\(String(decoding: input, as: UTF8.self).debugDescription)")
            }
            #expect(input.withUnsafeBytes { GenAuthResponseBody.decode($0) } == expected)
        }
        // Enough of the mutations stay valid for the comparison to mean something.
        #expect(fast > 300)
    }
}

/// A small deterministic generator, so a failing input can be found again.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
