import SMSModel
import Testing

@testable import SMSEngine

@Suite("Lease book")
struct LeaseBookTests {
    @Test("a job is let go of only under the claim it was held by")
    func releaseIsPerClaim() {
        let book = LeaseBook()
        book.hold([JobLease(id: 1, token: 10), JobLease(id: 2, token: 20)])
        // A later claim of job 1 (its lease ran out, this process claimed it again) replaces the first.
        book.hold([JobLease(id: 1, token: 11)])
        book.release(JobLease(id: 1, token: 10))
        #expect(Set(book.held()) == [JobLease(id: 1, token: 11), JobLease(id: 2, token: 20)])
        book.release(JobLease(id: 1, token: 11))
        #expect(book.held() == [JobLease(id: 2, token: 20)] && book.count == 1)
    }
}
