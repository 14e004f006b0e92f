import GenAuth
import Testing

/// One classification per call result; the verdict, the breaker's fault and the metric label are read
/// off it, so these tables are the whole contract.
@Suite("Answer classification")
struct AnswerClassTests {
    func body(_ code: Int) -> GenAuthResponseBody { GenAuthResponseBody(statusCode: code, message: "m", requestId: "r") }
    func answered(_ http: Int, _ code: Int?) -> CallResult {
        .answered(httpStatus: http, body: code.map(body), retryAfter: nil)
    }

    @Test func successNeedsBodyStatus200OnA2xx() {
        #expect(answered(200, 200).answerClass == .accepted)
        // HTTP 200 alone is not success: GenAuth reports most errors with HTTP 200.
        #expect(answered(200, 400).answerClass == .callerFault)
        #expect(answered(302, 200).answerClass == .unrecognised)
        #expect(answered(200, 200).answerClass.verdict == .sent)
    }

    @Test("4xx body codes are the caller's fault, except 429", arguments: [400, 401, 403, 404, 410, 422, 499])
    func callerFault(code: Int) {
        let answer = answered(200, code).answerClass
        #expect(answer == .callerFault)
        #expect(answer.verdict == .permanentFailure && !answer.isServerFault && answer.metricLabel == "body_4xx")
    }

    @Test(
        "server and third-party faults are transient and count for the breaker",
        arguments: [
            (500, AnswerClass.genauthFault), (503, .genauthFault), (599, .genauthFault), (700, .genauthFault),
            (600, .providerFault), (601, .providerFault), (609, .providerFault),
        ])
    func serverFaults(code: Int, expected: AnswerClass) {
        let answer = answered(200, code).answerClass
        #expect(answer == expected)
        #expect(answer.verdict == .transientFailure && answer.isServerFault)
    }

    @Test func rateLimitsAreGenAuthWorking() {
        let byBody = answered(200, 429).answerClass
        let byHTTP = CallResult.answered(httpStatus: 429, body: nil, retryAfter: .seconds(3)).answerClass
        #expect(byBody == .phoneWindowHeld && byHTTP == .qpsLimited)
        for answer in [byBody, byHTTP] {
            #expect(answer.verdict == .transientFailure && !answer.isServerFault)
        }
        // A body 429 is the phone's window (the proof of an earlier call) only on an HTTP 2xx; on any
        // other status it is a refusal like the QPS limit. Neither is a server fault.
        #expect(answered(500, 429).answerClass == .qpsLimited)
        #expect(byBody.metricLabel == "body_429" && byHTTP.metricLabel == "http_429")
    }

    @Test func transportAndHTTPFaults() {
        #expect(answered(503, nil).answerClass == .serverError)
        // A body saying 200 on a server error: nobody can say whether it went out.
        #expect(answered(500, 200).answerClass == .unrecognised)
        #expect(answered(408, nil).answerClass == .unrecognised)
        #expect(answered(404, nil).answerClass == .requestRefused)
        #expect(answered(404, nil).answerClass.verdict == .permanentFailure)
        #expect(answered(200, nil).answerClass == .unrecognised)
        #expect(CallResult.unanswered("t").answerClass == .unanswered)
        #expect(CallResult.notSent("c").answerClass == .notSent)
        for fault in [CallResult.unanswered("t"), .notSent("c"), answered(503, nil)] {
            #expect(fault.answerClass.verdict == .transientFailure && fault.answerClass.isServerFault)
        }
    }

    @Test("every class has the dashboard's label, and only its own")
    func labels() {
        let labels = AnswerClass.allCases.map(\.metricLabel)
        #expect(
            Set(labels) == [
                "ok", "body_4xx", "body_429", "body_5xx", "body_60x", "http_429", "http_5xx", "http_other",
                "unanswered", "not_sent",
            ])
        #expect(AnswerClass.allCases.count == 11)
    }

    /// Issue 26: only a request never written, and GenAuth's own refusals, are certainly unsent. A
    /// gateway's answer without GenAuth's body (a proxy's 502/504 comes after it forwarded the request)
    /// and a bodyless 2xx may hide an accepted SMS: the job stays uncertain and keeps its window.
    @Test func whichAnswersMayHaveSent() {
        for answer in [
            answered(502, nil), answered(504, nil), answered(503, nil), answered(200, nil), answered(204, nil),
            answered(404, nil), answered(408, nil), answered(500, 200), CallResult.unanswered("timeout"),
        ] {
            #expect(answer.answerClass.mayHaveSent, "\(answer)")
        }
        for answer in [
            CallResult.notSent("refused"), answered(429, nil), answered(429, 429), answered(200, 429),
            answered(200, 400), answered(200, 500), answered(503, 503), answered(200, 601),
        ] {
            #expect(!answer.answerClass.mayHaveSent, "\(answer)")
        }
    }
}
