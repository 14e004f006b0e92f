import Foundation
@testable import SMSDispatcherCore
import Testing

@Suite("Phone and channel validation")
struct ValidationTests {
    @Test("valid numbers pass; +86 is sent as no country code",
          arguments: [
              ("13800138000", nil as String?, "13800138000", nil as String?),
              ("19912345678", "+86", "19912345678", nil),
              ("5551234567", "+1", "5551234567", "+1"),
              ("91234567", "+852", "91234567", "+852"),
              ("2079460000", "+44", "2079460000", "+44"),
          ])
    func accepts(number: String, code: String?, sentNumber: String, sentCode: String?) throws {
        let phone = try JobValidation.validatePhone(number: number, countryCode: code).get()
        #expect(phone == ValidatedPhone(number: sentNumber, countryCode: sentCode))
    }

    @Test("invalid numbers are rejected with a message saying what is wrong",
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
          ])
    func rejects(number: String, code: String?, expected: String) {
        guard case .failure(let error) = JobValidation.validatePhone(number: number, countryCode: code) else {
            Issue.record("\(number) \(code ?? "nil") should be rejected")
            return
        }
        #expect(error.message.contains(expected), "\(error.message)")
        // The message must not repeat a whole valid-looking number (it would end up in logs).
        if number.count >= 7 { #expect(!error.message.contains(number)) }
    }

    @Test func channels() {
        #expect(Channel.allCases.count == 11)
        for channel in Channel.allCases {
            #expect((try? JobValidation.validateChannel(channel.rawValue).get()) == channel)
        }
        guard case .failure(let error) = JobValidation.validateChannel("CHANNEL_SPAM") else {
            Issue.record("unknown channel accepted")
            return
        }
        #expect(error.message.contains("CHANNEL_SPAM") && error.message.contains("CHANNEL_LOGIN"))
        #expect((try? JobValidation.validateChannel("channel_login").get()) == nil)
    }

    @Test func masking() {
        #expect(maskPhone("13800138000") == "138****8000")
        #expect(maskPhone("5551234") == "5551234".prefix(3) + "" + String(repeating: "*", count: 0) + "1234")
        #expect(maskPhone("12345") == "*****")
        #expect(!maskPhone("13800138000").contains("0013"))
    }
}

@Suite("Answer classification")
struct ClassificationTests {
    func body(_ code: Int) -> GenAuthResponseBody { GenAuthResponseBody(statusCode: code, message: "m", requestId: "r") }

    @Test func successNeedsBodyStatus200() {
        #expect(Classification.classify(.answered(httpStatus: 200, body: body(200), retryAfter: nil)) == .sent)
        // HTTP 200 alone is not success: GenAuth reports most errors with HTTP 200.
        #expect(Classification.classify(.answered(httpStatus: 200, body: body(400), retryAfter: nil)) == .permanentFailure)
    }

    @Test("4xx body codes are permanent, except 429",
          arguments: [400, 401, 403, 404, 410, 422, 499])
    func permanent(code: Int) {
        #expect(Classification.classify(.answered(httpStatus: 200, body: body(code), retryAfter: nil)) == .permanentFailure)
    }

    @Test("server, third-party and rate-limit faults are transient",
          arguments: [500, 502, 503, 599, 600, 601, 609, 429])
    func transientBody(code: Int) {
        #expect(Classification.classify(.answered(httpStatus: 200, body: body(code), retryAfter: nil))
            == .transientFailure(retryAfter: nil))
    }

    @Test func transportAndHTTPFaults() {
        #expect(Classification.classify(.answered(httpStatus: 429, body: nil, retryAfter: 3)) == .transientFailure(retryAfter: 3))
        #expect(Classification.classify(.answered(httpStatus: 503, body: nil, retryAfter: nil)) == .transientFailure(retryAfter: nil))
        #expect(Classification.classify(.answered(httpStatus: 500, body: body(200), retryAfter: nil)) == .transientFailure(retryAfter: nil))
        #expect(Classification.classify(.answered(httpStatus: 408, body: nil, retryAfter: nil)) == .transientFailure(retryAfter: nil))
        #expect(Classification.classify(.answered(httpStatus: 404, body: nil, retryAfter: nil)) == .permanentFailure)
        #expect(Classification.classify(.answered(httpStatus: 200, body: nil, retryAfter: nil)) == .transientFailure(retryAfter: nil))
        #expect(Classification.classify(.unanswered("t")) == .transientFailure(retryAfter: nil))
        #expect(Classification.classify(.notSent("c")) == .transientFailure(retryAfter: nil))
    }

    @Test func outcomesFollowAttempts() {
        let job = ClaimedJob(id: 1, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000", phoneCountryCode: nil,
                             attempts: 0, maxAttempts: 2)
        let backoff = Backoff(base: 1, maximum: 10)
        let started = ContinuousClock.now
        let finished = started + .seconds(1)
        let first = Dispatcher.outcome(for: job, result: .answered(httpStatus: 503, body: nil, retryAfter: nil),
                                       started: started, finished: finished, backoff: backoff)
        #expect(first.state == .pending)
        #expect(first.call?.httpStatus == 503)
        #expect((0.5...1).contains(first.retryIn ?? -1))
        let lastJob = ClaimedJob(id: 1, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000", phoneCountryCode: nil,
                                 attempts: 1, maxAttempts: 2)
        let last = Dispatcher.outcome(for: lastJob, result: .notSent("refused"), started: started, finished: finished, backoff: backoff)
        #expect(last.state == .failed)
        #expect(last.message?.contains("attempts exhausted (2 of 2)") == true)
        let sent = Dispatcher.outcome(for: job, result: .answered(httpStatus: 200, body: GenAuthResponseBody(statusCode: 200, message: "", requestId: "abc"), retryAfter: nil), started: started, finished: finished, backoff: backoff)
        #expect(sent.state == .sent && sent.call?.requestID == "abc")
    }

    /// Issue 11: a call written and not answered may have been accepted; one never written was not.
    @Test("unanswered calls are uncertain, calls never sent are retried under either policy")
    func uncertainAndCertainCalls() {
        let job = ClaimedJob(id: 1, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000", phoneCountryCode: nil,
                             attempts: 0, maxAttempts: 5)
        let backoff = Backoff(base: 100, maximum: 300)
        let started = ContinuousClock.now
        let finished = started + .seconds(10)
        for policy in [DeliveryPolicy.atLeastOnce, .atMostOnce] {
            let notSent = Dispatcher.outcome(for: job, result: .notSent("connection refused"), started: started,
                                             finished: finished, backoff: backoff, policy: policy)
            #expect(notSent.state == .pending, "never sent: retried under \(policy)")
            #expect(!notSent.uncertain)
        }
        let late = Dispatcher.outcome(for: job, result: .unanswered("timeout"), started: started, finished: finished,
                                      backoff: backoff, window: 60)
        #expect(late.state == .pending && late.uncertain)
        // Back while GenAuth's window for the unseen call is still open: (60 - 10) / 2.
        #expect((late.retryIn ?? 999) <= 25)
        let atMostOnce = Dispatcher.outcome(for: job, result: .unanswered("timeout"), started: started, finished: finished,
                                            backoff: backoff, policy: .atMostOnce)
        #expect(atMostOnce.state == .failed && atMostOnce.message?.hasPrefix("delivery unknown") == true)
        // The retry of an uncertain job that GenAuth calls too frequent: the earlier call went out.
        let retry = ClaimedJob(id: 1, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000", phoneCountryCode: nil,
                               attempts: 4, maxAttempts: 5, uncertain: true)
        let tooFrequent = GenAuthResponseBody(statusCode: 429, message: "SMS sent too frequently", apiCode: 2021)
        let presumed = Dispatcher.outcome(for: retry, result: .answered(httpStatus: 200, body: tooFrequent, retryAfter: nil),
                                          started: started, finished: finished, backoff: backoff)
        #expect(presumed.state == .sent && presumed.message?.hasPrefix("presumed sent") == true)
        // A 503 on the way keeps the uncertainty (and so the phone's window).
        let busy = Dispatcher.outcome(for: ClaimedJob(id: 1, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000",
                                                      phoneCountryCode: nil, attempts: 1, maxAttempts: 5, uncertain: true),
                                      result: .answered(httpStatus: 503, body: nil, retryAfter: nil), started: started,
                                      finished: finished, backoff: backoff)
        #expect(busy.state == .pending && busy.uncertain)
    }
}

@Suite("Retry backoff")
struct BackoffTests {
    @Test func growsExponentiallyWithinJitterBounds() {
        let backoff = Backoff(base: 2, maximum: 300)
        for attempt in 1...6 {
            let ceiling = min(300, 2 * pow(2, Double(attempt - 1)))
            #expect(backoff.delay(afterAttempt: attempt, random: 0) == ceiling / 2)
            #expect(backoff.delay(afterAttempt: attempt, random: 1) == ceiling)
            for _ in 0..<50 {
                let delay = backoff.delay(afterAttempt: attempt)
                #expect(delay >= ceiling / 2 && delay <= ceiling)
            }
        }
    }

    @Test func capped() {
        let backoff = Backoff(base: 2, maximum: 30)
        #expect(backoff.delay(afterAttempt: 40, random: 1) == 30)
        #expect(backoff.delay(afterAttempt: 1000, random: 0) == 15)
    }

    @Test func honoursLongerRetryAfter() {
        let backoff = Backoff(base: 2, maximum: 300)
        #expect(backoff.delay(afterAttempt: 1, retryAfter: 20, random: 0) == 20)
        #expect(backoff.delay(afterAttempt: 1, retryAfter: 0.1, random: 0) == 1)
        #expect(backoff.delay(afterAttempt: 1, retryAfter: 1_000, random: 0) == 1_000)
        #expect(backoff.delay(afterAttempt: 1, retryAfter: 100_000, random: 0) == 3_600)
    }

    @Test func retryAfterHeader() {
        #expect(GenAuthClient.parseRetryAfter("7") == 7)
        #expect(GenAuthClient.parseRetryAfter(" 2.5 ") == 2.5)
        #expect(GenAuthClient.parseRetryAfter("soon") == nil)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let inTen = formatter.string(from: Date().addingTimeInterval(10))
        let parsed = GenAuthClient.parseRetryAfter(inTen)
        #expect(parsed != nil && parsed! > 7 && parsed! <= 10)
    }
}

@Suite("GenAuth answer reader")
struct AnswerReaderTests {
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
