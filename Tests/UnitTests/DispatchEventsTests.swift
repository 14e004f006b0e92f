@testable import SMSEngine
import Testing

@Suite("Dispatch events")
struct DispatchEventsTests {
    @Test("a burst is one turn: call completions add up, other events come once each, in order")
    func coalesces() async {
        let events = DispatchEvents()
        events.send(.jobsAvailable)
        for _ in 0..<100 { events.send(.callsFinished(1)) }
        events.send(.tick)
        events.send(.jobsAvailable)
        let turn = await events.next()
        #expect(turn == [.jobsAvailable, .tick, .callsFinished(100)])
    }

    @Test func aWaitingLoopIsWokenAndCloseEndsIt() async {
        let events = DispatchEvents()
        async let turn = events.next()
        try? await Task.sleep(for: .milliseconds(20))
        events.send(.shutdownRequested)
        #expect(await turn == [.shutdownRequested])
        events.close()
        #expect(await events.next() == nil)
        // Sent after close: dropped, not delivered.
        events.send(.tick)
        #expect(await events.next() == nil)
    }
}
