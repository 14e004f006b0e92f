import Foundation
import GenAuth
import SMSEngine
import Testing

@testable import SMSModel

/// Triage is pure: every decision about a job without I/O, so these run without a database.
@Suite("Triage")
struct TriageTests {
    static let now = 1_800_000_000.0

    func triage(_ edit: (inout Triage.Configuration) -> Void = { _ in }, window: Duration = .seconds(60)) -> Triage {
        var configuration = Triage.Configuration()
        configuration.backoff = Backoff(base: .seconds(1), maximum: .seconds(10))
        edit(&configuration)
        return Triage(configuration: configuration, throttleWindow: window)
    }

    func claimed(
        channel: String = "CHANNEL_LOGIN", phone: String = "13800138000", code: String? = nil,
        attempts: Int = 0, maxAttempts: Int = 5, age: Double = 0, expiresIn: Double? = nil,
        newer: Int64? = nil, uncertain: Bool = false, proofIn: Double? = 50
    ) -> ClaimedJob {
        ClaimedJob(
            id: 7, leaseToken: 3, channel: channel, phoneNumber: phone, phoneCountryCode: code, attempts: attempts,
            maxAttempts: maxAttempts, createdAt: Self.now - age, expiresAt: expiresIn.map { Self.now + $0 },
            now: Self.now, newerJob: newer, uncertain: uncertain,
            proofUntil: uncertain ? proofIn.map { Self.now + $0 } : nil)
    }

    func valid(_ job: ClaimedJob, _ triage: Triage) throws -> ValidJob {
        guard case .send(let valid) = triage.decide(job) else {
            Issue.record("\(job) should be sendable")
            throw CancellationError()
        }
        return valid
    }

    func settled(_ decision: Triage.Decision) -> JobOutcome? {
        if case .settle(let outcome) = decision { return outcome }
        return nil
    }

    @Test func aValidJobIsCheckedAndTypedOnce() throws {
        let job = try valid(claimed(code: "+86"), triage())
        #expect(job.channel == .login)
        #expect(job.phone == ValidatedPhone(number: "13800138000", countryCode: nil))
        #expect(job.lease == JobLease(id: 7, token: 3))
    }

    @Test("jobs that must not be sent are settled, each saying why")
    func settledWithoutACall() {
        let triage = triage { $0.rules[.register].enabled = false }
        let cases: [(ClaimedJob, JobState, String)] = [
            (claimed(channel: "CHANNEL_SPAM"), .rejected, "not a GenAuth channel"),
            (claimed(expiresIn: -1), .expired, "expires_at passed"),
            (claimed(age: 601), .expired, "TTL of 600 s"),
            (claimed(phone: "1380013800"), .rejected, "has 10 digits"),
            (claimed(channel: "CHANNEL_REGISTER"), .rejected, "disabled by configuration"),
            (claimed(phone: "5551234567", code: "+1"), .rejected, "international numbers are not enabled"),
            (claimed(newer: 9), .superseded, "superseded by job 9"),
            (claimed(attempts: 5, maxAttempts: 5), .failed, "attempts exhausted (5 of 5)"),
        ]
        for (job, state, message) in cases {
            let outcome = settled(triage.decide(job))
            #expect(outcome?.state == state, "\(job)")
            #expect(outcome?.message?.contains(message) == true, "\(outcome?.message ?? "sendable")")
            #expect(outcome?.job == job.lease)
        }
    }

    @Test func countriesAndChannelCapsFromConfiguration() throws {
        let triage = triage {
            $0.rules.international = true
            $0.rules.allowedCountryCodes = ["+852"]
            $0.rules[.login].maxAttempts = 2
            $0.rules[.login].coalesce = false
        }
        #expect(settled(triage.decide(claimed(phone: "5551234567", code: "+1")))?.message?.contains("+1 is not allowed") == true)
        #expect(try valid(claimed(phone: "91234567", code: "+852"), triage).phone.countryCode == "+852")
        // The channel's cap applies to the job's own max_attempts, once.
        #expect(try valid(claimed(attempts: 1, maxAttempts: 5), triage).maxAttempts == 2)
        #expect(settled(triage.decide(claimed(attempts: 2, maxAttempts: 5)))?.state == .failed)
        // Coalescing off: a newer job does not supersede this one.
        #expect(try valid(claimed(newer: 9), triage).id == 7)
    }

    @Test func aDeferralPastTheDeadlineExpires() throws {
        let triage = triage()
        let job = try valid(claimed(age: 500), triage)
        let soon = triage.deferral(job, until: Self.now + 60)
        #expect(
            soon.state == .pending && soon.deferredUntil == Self.now + 60 && soon.message?.contains("throttle.window") == true)
        let late = triage.deferral(job, until: Self.now + 120, reason: "the breaker")
        #expect(late.state == .expired && late.message?.contains("the breaker") == true)
    }

    @Test func outcomesFollowAttempts() throws {
        let triage = triage()
        let started = ContinuousClock.now
        let finished = started + .seconds(1)
        func outcome(_ job: ClaimedJob, _ result: CallResult) throws -> JobOutcome {
            triage.outcome(
                for: try valid(job, triage), result: result, answer: result.answerClass, started: started,
                finished: finished)
        }
        let first = try outcome(claimed(maxAttempts: 2), .answered(httpStatus: 503, body: nil, retryAfter: nil))
        #expect(first.state == .pending && first.call?.httpStatus == 503)
        #expect((Duration.milliseconds(500)...Duration.seconds(1)).contains(first.retryIn ?? .zero))
        let last = try outcome(claimed(attempts: 1, maxAttempts: 2), .notSent("refused"))
        #expect(last.state == .failed && last.message?.contains("attempts exhausted (2 of 2)") == true)
        let sent = try outcome(
            claimed(),
            .answered(
                httpStatus: 200,
                body: GenAuthResponseBody(
                    statusCode: 200, message: "",
                    requestId: "abc"), retryAfter: nil))
        #expect(sent.state == .sent && sent.call?.requestID == "abc" && sent.coalesce)
        let wrongNumber = try outcome(
            claimed(), .answered(httpStatus: 200, body: GenAuthResponseBody(statusCode: 400), retryAfter: nil))
        #expect(wrongNumber.state == .failed)
        // A Retry-After longer than the backoff wins.
        let limited = try outcome(claimed(), .answered(httpStatus: 429, body: nil, retryAfter: .seconds(30)))
        #expect(limited.state == .pending && limited.retryIn == .seconds(30))
    }

    /// Issue 11: a call written and not answered may have been accepted; one never written was not.
    @Test("unanswered calls are uncertain, calls never sent are retried under either policy")
    func uncertainAndCertainCalls() throws {
        let started = ContinuousClock.now
        let finished = started + .seconds(10)
        func outcome(_ policy: DeliveryPolicy, _ job: ClaimedJob, _ result: CallResult) throws -> JobOutcome {
            let triage = triage {
                $0.policy = policy
                $0.backoff = Backoff(base: .seconds(100), maximum: .seconds(300))
            }
            return triage.outcome(
                for: try valid(job, triage), result: result, answer: result.answerClass,
                started: started, finished: finished)
        }
        for policy in DeliveryPolicy.allCases {
            let notSent = try outcome(policy, claimed(), .notSent("connection refused"))
            #expect(notSent.state == .pending && !notSent.uncertain, "never sent: retried under \(policy)")
        }
        let late = try outcome(.atLeastOnce, claimed(), .unanswered("timeout"))
        #expect(late.state == .pending && late.uncertain)
        // Back while GenAuth's window for the unseen call is still open: (60 - 10) / 2.
        #expect((late.retryIn ?? .seconds(999)) <= .seconds(25))
        let atMostOnce = try outcome(.atMostOnce, claimed(), .unanswered("timeout"))
        #expect(atMostOnce.state == .failed && atMostOnce.message?.hasPrefix("delivery unknown") == true)
        // The retry of an uncertain job that GenAuth calls too frequent: the earlier call went out.
        let tooFrequent = GenAuthResponseBody(statusCode: 429, message: "SMS sent too frequently", apiCode: 2021)
        let presumed = try outcome(
            .atLeastOnce, claimed(attempts: 4, uncertain: true),
            .answered(httpStatus: 200, body: tooFrequent, retryAfter: nil))
        #expect(presumed.state == .sent && presumed.message?.hasPrefix("presumed sent") == true)
        // The same answer to a job with no unseen call is only the window: retried.
        let certain = try outcome(
            .atLeastOnce, claimed(attempts: 1), .answered(httpStatus: 200, body: tooFrequent, retryAfter: nil))
        #expect(certain.state == .pending)
        // A 503 on the way keeps the uncertainty (and so the phone's window).
        let busy = try outcome(
            .atLeastOnce, claimed(attempts: 1, uncertain: true), .answered(httpStatus: 503, body: nil, retryAfter: nil))
        #expect(busy.state == .pending && busy.uncertain)
    }

    /// Issue 26: a retry of a call that may have gone out either reaches GenAuth while it can prove that
    /// call, or is not sent as if nothing happened.
    @Test("the proof window: presumed sent only inside it; a send after it says a second SMS is possible")
    func proofWindow() throws {
        let tooFrequent = GenAuthResponseBody(statusCode: 429, message: "SMS sent too frequently", apiCode: 2021)
        let accepted = GenAuthResponseBody(statusCode: 200, message: "", requestId: "r1")
        func outcome(_ job: ClaimedJob, _ result: CallResult, startedAfter: Duration = .zero) throws -> JobOutcome {
            let triage = triage()
            let started = job.claimedAt + startedAfter
            return triage.outcome(
                for: try valid(job, triage), result: result, answer: result.answerClass,
                started: started, finished: started + .milliseconds(100))
        }
        // Inside the window (50 s left): GenAuth's "too frequent" proves the earlier call.
        let inside = try outcome(
            claimed(attempts: 1, uncertain: true, proofIn: 50),
            .answered(httpStatus: 200, body: tooFrequent, retryAfter: nil))
        #expect(inside.state == .sent && inside.message?.hasPrefix("presumed sent") == true)
        // The same answer once the window has closed (or less than its margin left) proves nothing: retried.
        for proofIn in [0.5, -10.0] {
            let after = try outcome(
                claimed(attempts: 1, uncertain: true, proofIn: proofIn),
                .answered(httpStatus: 200, body: tooFrequent, retryAfter: nil))
            #expect(after.state == .pending && after.uncertain, "\(proofIn)")
        }
        // The call left later than the claim: what counts is when it started.
        let late = try outcome(
            claimed(attempts: 1, uncertain: true, proofIn: 5),
            .answered(httpStatus: 200, body: tooFrequent, retryAfter: nil), startedAfter: .seconds(10))
        #expect(late.state == .pending)
        // GenAuth's QPS limit (HTTP 429, with its body saying 429 too) is no proof, inside the window either.
        let qps = try outcome(
            claimed(attempts: 1, uncertain: true, proofIn: 50),
            .answered(httpStatus: 429, body: tooFrequent, retryAfter: .seconds(1)))
        #expect(qps.state == .pending && qps.uncertain)
        // Accepted inside the window: the earlier call cannot have gone out (GenAuth would have refused
        // this one), plain sent. After it: a second SMS is possible, and the row says so.
        let sentInside = try outcome(
            claimed(attempts: 1, uncertain: true, proofIn: 50),
            .answered(httpStatus: 200, body: accepted, retryAfter: nil))
        #expect(sentInside.state == .sent && !sentInside.possibleDuplicate)
        let sentAfter = try outcome(
            claimed(attempts: 1, uncertain: true, proofIn: -1),
            .answered(httpStatus: 200, body: accepted, retryAfter: nil))
        #expect(sentAfter.state == .sent && sentAfter.possibleDuplicate)
        #expect(sentAfter.message?.contains("a second SMS is possible") == true)
        // A job with no unanswered call is never a possible duplicate.
        let plain = try outcome(claimed(attempts: 1), .answered(httpStatus: 200, body: accepted, retryAfter: nil))
        #expect(plain.state == .sent && !plain.possibleDuplicate)
    }

    @Test("answers that are not GenAuth's (a gateway's 502/504, a bodyless 2xx) leave the job uncertain")
    func gatewayAnswersAreUncertain() throws {
        let triage = triage { $0.backoff = Backoff(base: .seconds(100), maximum: .seconds(300)) }
        for http in [502, 504, 200] {
            let job = claimed()
            let started = job.claimedAt
            let result = CallResult.answered(httpStatus: http, body: nil, retryAfter: nil)
            let outcome = triage.outcome(
                for: try valid(job, triage), result: result, answer: result.answerClass,
                started: started, finished: started + .seconds(2))
            #expect(outcome.state == .pending && outcome.uncertain && outcome.callMayHaveSent, "HTTP \(http)")
            // Back before GenAuth's window for that call closes: (60 - 2 - 1) / 2 s at most.
            #expect((outcome.retryIn ?? .seconds(999)) <= .seconds(29), "HTTP \(http): \(String(describing: outcome.retryIn))")
        }
        // GenAuth's own refusal with its body is certain: the window is freed.
        let job = claimed()
        let refused = CallResult.answered(httpStatus: 200, body: GenAuthResponseBody(statusCode: 500), retryAfter: nil)
        let outcome = triage.outcome(
            for: try valid(job, triage), result: refused, answer: refused.answerClass,
            started: job.claimedAt, finished: job.claimedAt + .seconds(1))
        #expect(outcome.state == .pending && !outcome.uncertain && !outcome.callMayHaveSent)
    }

    @Test("a job whose earlier call may have gone out is not superseded while its proof window is open")
    func uncertainNotSuperseded() throws {
        let triage = triage()
        guard case .send = triage.decide(claimed(attempts: 1, newer: 9, uncertain: true, proofIn: 30)) else {
            Issue.record("a retry inside its proof window must go out to find the truth, not be superseded")
            return
        }
        let past = settled(triage.decide(claimed(attempts: 1, newer: 9, uncertain: true, proofIn: -5)))
        #expect(past?.state == .superseded, "past its window, the newer request takes its place")
        let plain = settled(triage.decide(claimed(newer: 9)))
        #expect(plain?.state == .superseded)
    }
}
