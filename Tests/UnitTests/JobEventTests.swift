import SMSJobStore
import Testing

@Suite("Job events")
struct JobEventTests {
    @Test("a payload's `<id>:<state>` items, malformed ones skipped")
    func parse() {
        #expect(JobEvent.parse(payload: "12:sent") == [JobEvent(id: 12, state: "sent")])
        #expect(JobEvent.parse(payload: "1:sent,2:pending,30000000000:superseded").map(\.id) == [1, 2, 30_000_000_000])
        #expect(JobEvent.parse(payload: "").isEmpty)
        #expect(JobEvent.parse(payload: "x:sent,3:,4:failed,5:a:b,6") == [JobEvent(id: 4, state: "failed")])
    }

    @Test("channel names as the SQL sends them")
    func channels() {
        #expect(NotificationChannel.allCases.map(\.rawValue) == ["sms_jobs", "sms_job_events", "sms_controls"])
    }
}
