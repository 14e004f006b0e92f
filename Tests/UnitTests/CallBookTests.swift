import SMSModel
import Testing

@testable import SMSEngine

/// Issue 26: every call slot is a loan with a deadline; none can be held longer.
@Suite("CallBook")
struct CallBookTests {
    let triage = Triage(configuration: Triage.Configuration(), throttleWindow: .seconds(60))

    func job(_ id: Int64, token: Int64 = 1) -> ValidJob {
        let claimed = ClaimedJob(
            id: id, leaseToken: token, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000",
            phoneCountryCode: nil, attempts: 0, maxAttempts: 5)
        guard case .send(let valid) = triage.decide(claimed) else { fatalError("test job must be valid") }
        return valid
    }

    @Test("a call's end frees its slot once; a call whose end never came is handed back after its timeout and margin")
    func loansAreBounded() {
        let book = CallBook()
        let start = ContinuousClock.now
        book.open(job(1), triage: triage, startingAt: start, timeout: .seconds(10))
        book.open(job(2), triage: triage, startingAt: start + .seconds(5), timeout: .seconds(10))
        #expect(book.count == 2)
        #expect(book.overdue(now: start + .seconds(14)).isEmpty, "within the timeout and its margin")
        let late = book.overdue(now: start + .seconds(16))
        #expect(late.map(\.job.id) == [1], "job 1: 10 s + 5 s margin passed; job 2 started 5 s later")
        #expect(!book.finish(job(1).lease), "its end came after all: written, but its slot was freed already")
        #expect(book.holds(job(2).lease) && !book.holds(job(1).lease))
        #expect(book.finish(job(2).lease) && !book.finish(job(2).lease), "an end frees the slot once")
        #expect(book.count == 0)
    }

    @Test("two claims of one job are two loans: the first's end does not free the second's slot")
    func keyedByClaim() {
        let book = CallBook()
        let start = ContinuousClock.now
        book.open(job(1, token: 1), triage: triage, startingAt: start, timeout: .seconds(10))
        book.open(job(1, token: 2), triage: triage, startingAt: start, timeout: .seconds(10))
        #expect(book.count == 2)
        #expect(book.finish(job(1, token: 1).lease) && book.holds(job(1, token: 2).lease))
    }
}
