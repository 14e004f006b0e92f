import SMSModel
import Testing

@testable import SMSEngine

/// Issue 26: one write-back statement must not update a row twice (PostgreSQL applies one of the two,
/// which one unsaid): a batch keeps one outcome per claim of a job, GenAuth's acceptance first.
@Suite("OutcomeWriter")
struct OutcomeWriterTests {
    @Test("one outcome per claim: a call's acceptance wins over the unanswered outcome written when its slot was reclaimed")
    func onePerClaim() {
        let first = JobLease(id: 1, token: 10)
        let again = JobLease(id: 1, token: 11)
        let other = JobLease(id: 2, token: 10)
        let reclaimed = JobOutcome(
            job: first, state: .pending, message: "no end of this call reached the daemon", retryIn: .seconds(1))
        let accepted = JobOutcome(job: first, state: .sent, message: "")
        let kept = OutcomeWriter.onePerClaim([
            reclaimed, JobOutcome(job: other, state: .failed, message: "x"), accepted,
            JobOutcome(job: again, state: .pending, message: "later claim"),
        ])
        #expect(kept.map(\.job) == [first, other, again])
        #expect(kept[0] == accepted)
        // An acceptance is never replaced by what comes after it; otherwise the later outcome wins.
        #expect(OutcomeWriter.onePerClaim([accepted, reclaimed]) == [accepted])
        let retry = JobOutcome(job: other, state: .pending, message: "retry", retryIn: .seconds(2))
        #expect(OutcomeWriter.onePerClaim([JobOutcome(job: other, state: .pending, message: "held"), retry]) == [retry])
    }
}
