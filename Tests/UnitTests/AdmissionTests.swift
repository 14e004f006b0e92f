import SMSModel
@testable import SMSEngine
import Testing

/// Admission's pure halves: the round's batch and the breaker's deferrals (`plan`), and the database's
/// verdicts sorted (`apply`). The reservation itself is SQL, tested against PostgreSQL.
@Suite("Admission")
struct AdmissionTests {
    let triage = Triage(configuration: Triage.Configuration(), throttleWindow: .seconds(60))

    func admission(threshold: Int = 10) -> Admission {
        var breaker = CircuitBreaker.Configuration()
        breaker.threshold = threshold
        breaker.coolDown = .seconds(30)
        return Admission(configuration: Admission.Configuration(), breaker: CircuitBreaker(configuration: breaker),
                         triage: triage)
    }

    func job(_ id: Int64, phone: String = "13800138000", channel: Channel = .login) -> ValidJob {
        let claimed = ClaimedJob(id: id, leaseToken: id * 10, channel: channel.rawValue, phoneNumber: phone,
                                 phoneCountryCode: nil, attempts: 0, maxAttempts: 5, createdAt: 1_000, now: 1_000)
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
        let jobs = [job(1), job(2, phone: "13900139000"), job(3, phone: "13700137000"), job(4, phone: "13600136000"),
                    job(5, phone: "13500135000")]
        let verdicts = admission().apply([
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

    @Test("a batch is reserved in statements of at most 256 jobs (each takes up to four locks a job)")
    func reservationChunks() {
        #expect(Admission.chunks(of: 0).isEmpty)
        #expect(Admission.chunks(of: 64) == [0..<64])
        #expect(Admission.chunks(of: 256) == [0..<256])
        #expect(Admission.chunks(of: 4096).count == 16 && Admission.chunks(of: 4096).last == 3840..<4096)
        #expect(Admission.chunks(of: 600) == [0..<256, 256..<512, 512..<600])
    }
}
