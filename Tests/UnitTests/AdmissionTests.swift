import SMSModel
import Testing

@testable import SMSEngine

/// Admission's pure halves: the round's batch and the breaker's deferrals (`plan`), and the database's
/// verdicts sorted (`apply`). The reservation itself is SQL, tested against PostgreSQL.
@Suite("Admission")
struct AdmissionTests {
    let triage = Triage(configuration: Triage.Configuration(), throttleWindow: .seconds(60))

    func admission(threshold: Int = 10) -> Admission {
        var breaker = CircuitBreaker.Configuration()
        breaker.threshold = threshold
        breaker.coolDown = .seconds(30)
        return Admission(
            configuration: Admission.Configuration(), breaker: CircuitBreaker(configuration: breaker),
            triage: triage)
    }

    func job(_ id: Int64, phone: String = "13800138000", channel: Channel = .login, proofIn: Double? = nil) -> ValidJob {
        let claimed = ClaimedJob(
            id: id, leaseToken: id * 10, channel: channel.rawValue, phoneNumber: phone,
            phoneCountryCode: nil, attempts: proofIn == nil ? 0 : 1, maxAttempts: 5, createdAt: 1_000,
            now: 1_000, uncertain: proofIn != nil, proofUntil: proofIn.map { 1_000 + $0 })
        guard case .send(let valid) = triage.decide(claimed) else { fatalError("test job must be valid") }
        return valid
    }

    @Test("one job per phone and channel per round; the others wait for the next")
    func onePerPhoneAndChannel() {
        let jobs = [job(1), job(2), job(3, channel: .register), job(4, phone: "13900139000")]
        let plan = admission().plan(jobs)
        #expect(plan.batch.map(\.id) == [1, 3, 4])
        #expect(plan.nextRound.map(\.id) == [2])
        #expect(plan.settled.isEmpty && plan.probe == nil)
    }

    @Test("an open breaker defers the batch, each job saying why, with no reservation")
    func breaker() {
        let admission = admission(threshold: 1)
        _ = admission.breaker.record(isServerFault: true)
        let closed = admission.plan([job(1), job(2, phone: "13900139000")])
        #expect(closed.batch.isEmpty)
        #expect(closed.settled.map(\.state) == [.pending, .pending])
        #expect(closed.settled.allSatisfy { $0.message?.contains("circuit breaker open") == true && $0.deferredUntil != nil })
    }

    @Test func verdictsAreSorted() {
        let jobs = [
            job(1), job(2, phone: "13900139000"), job(3, phone: "13700137000"), job(4, phone: "13600136000"),
            job(5, phone: "13500135000"),
        ]
        let verdicts = admission().apply(
            [
                1: .granted(slot: .milliseconds(20)), 2: .deferred(until: 1_030), 3: .capped("5 SMS in the last hour"),
                4: .lost,
            ], to: jobs)
        #expect(verdicts.granted.map(\.job.id) == [1] && verdicts.granted.first?.slot == .milliseconds(20))
        #expect(verdicts.settled.map(\.jobID) == [2, 3])
        #expect(verdicts.settled.map(\.state) == [.pending, .rejected])
        #expect(verdicts.lost.map(\.id) == [4])
        #expect(verdicts.unanswered.map(\.id) == [5])
    }

    @Test("a job whose channel was paused after its claim goes back to pending, saying why, no call, no attempt")
    func pausedVerdict() {
        let jobs = [job(1)]
        let verdicts = admission().apply([1: .paused("paused: CHANNEL_LOGIN paused by ops")], to: jobs)
        #expect(verdicts.granted.isEmpty && verdicts.lost.isEmpty && verdicts.unanswered.isEmpty)
        let outcome = verdicts.settled.first
        #expect(outcome?.state == .pending && outcome?.call == nil && outcome?.retryIn == .zero)
        #expect(outcome?.message == "paused: CHANNEL_LOGIN paused by ops")
    }

    @Test("a job the fraud guard stopped ends rejected with the guard's message: no call, no attempt, no retry")
    func fraudVerdict() {
        let jobs = [job(1), job(2, phone: "13900139000")]
        let message = "fraud guard: per_ip_hour: client_ip 203.0.113.9 had 10 SMS in the last hour (fraud.per_ip_hour = 10)"
        let verdicts = admission().apply([1: .fraud(rule: .perIPHour, message: message), 2: .granted(slot: .zero)], to: jobs)
        #expect(verdicts.granted.map(\.job.id) == [2] && verdicts.lost.isEmpty && verdicts.unanswered.isEmpty)
        let outcome = verdicts.settled.first
        #expect(verdicts.settled.count == 1 && outcome?.jobID == 1)
        #expect(outcome?.state == .rejected && outcome?.call == nil && outcome?.retryIn == nil)
        #expect(outcome?.message == message)
    }

    /// Issue 26: the breaker holds calls that can wait; a retry of a call that may have gone out cannot
    /// wait past its proof window.
    @Test("an open breaker holds a job whose earlier call may have gone out no later than its proof window, then lets it call")
    func breakerAndTheProofWindow() {
        let admission = admission(threshold: 1)  // cool-down 30 s
        _ = admission.breaker.record(isServerFault: true)
        let plan = admission.plan([
            job(1, proofIn: 20), job(2, phone: "13900139000", proofIn: 1.5),
            job(3, phone: "13700137000", proofIn: 0.5), job(4, phone: "13600136000"),
        ])
        // 1.5 s left, its last stretch (under the 3 s lead a retry needs with a 1 s poll): it calls now,
        // breaker or not.
        #expect(plan.batch.map(\.id) == [2])
        let until = Dictionary(uniqueKeysWithValues: plan.settled.map { ($0.jobID, $0.deferredUntil ?? 0) })
        // 20 s left: back a lead (3 s) before the window closes, not in the breaker's 30 s.
        #expect(abs(until[1, default: 0] - 1_017) < 0.5, "\(until)")
        // Its window as good as closed (under the 1 s margin left): held like any job.
        #expect(abs(until[3, default: 0] - 1_030) < 0.5 && abs(until[4, default: 0] - 1_030) < 0.5, "\(until)")
        // A retry that can wait for the breaker does.
        let soon = admission.plan([job(5, proofIn: 50)])
        #expect(soon.batch.isEmpty && abs((soon.settled.first?.deferredUntil ?? 0) - 1_030) < 0.5)
    }

    @Test("the half-open probe is a job with no unanswered call when there is one (those are claimed first)")
    func probeIsACertainJob() async throws {
        var configuration = CircuitBreaker.Configuration()
        configuration.threshold = 1
        configuration.coolDown = .milliseconds(1)
        let admission = Admission(
            configuration: Admission.Configuration(),
            breaker: CircuitBreaker(configuration: configuration), triage: triage)
        _ = admission.breaker.record(isServerFault: true)
        try await Task.sleep(for: .milliseconds(5))
        let plan = admission.plan([job(1, proofIn: 40), job(2, phone: "13900139000"), job(3, phone: "13700137000")])
        #expect(plan.probe == 2 && plan.batch.map(\.id) == [2])
    }

    @Test("a job whose row or key another session holds waits half a second, alone; the rest of the batch goes")
    func busyVerdict() {
        let jobs = [job(1), job(2, phone: "13900139000")]
        let verdicts = admission().apply([1: .busy(retryIn: .milliseconds(500)), 2: .granted(slot: .zero)], to: jobs)
        #expect(verdicts.granted.map(\.job.id) == [2])
        let outcome = verdicts.settled.first
        #expect(outcome?.state == .pending && outcome?.retryIn == .milliseconds(500) && outcome?.deferredUntil == nil)
        #expect(outcome?.call == nil, "no call, no attempt")
    }
}
