import SMSModel
import Testing

@testable import SMSEngine

@Suite("Write queue")
struct WriteQueueTests {
    func outcome(_ id: Int64) -> JobOutcome { JobOutcome(job: JobLease(id: id, token: 1), state: .sent, message: nil) }

    @Test("outcomes count as unsettled from submission until the writer says they are written")
    func unsettledUntilWritten() async {
        let queue = WriteQueue()
        queue.submit([outcome(1), outcome(2)])
        #expect(queue.unsettled == 2)
        let (taken, finished) = await queue.next()
        #expect(taken.map(\.jobID) == [1, 2] && !finished)
        queue.submit(outcome(3))
        #expect(queue.unsettled == 3, "taken but not written still counts")
        queue.settled(2)
        #expect(queue.unsettled == 1)
        #expect(queue.takeNow().map(\.jobID) == [3] && queue.takeNow().isEmpty)
    }

    @Test func aWaitingWriterIsWokenByASubmissionAndByFinish() async {
        let queue = WriteQueue()
        async let first = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        queue.submit(outcome(7))
        #expect(await first.outcomes.map(\.jobID) == [7])
        async let last = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        queue.finish()
        let end = await last
        #expect(end.outcomes.isEmpty && end.finished)
    }
}
