import Testing

@testable import SMSEngine

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

extension DispatchEventsTests {
    /// Without this a cancelled dispatcher (another service of the group failed) would keep its claim
    /// loop waiting for ever, with no writer and no heartbeat left.
    @Test("a loop waiting for events ends when its task is cancelled")
    func cancellationEndsTheWait() async {
        let events = DispatchEvents()
        let waiting = Task { await events.next() }
        try? await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        #expect(await waiting.value == nil)
        // Cancelled before it waits: it does not wait at all.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await events.next()
        }
        #expect(await early.value == nil)
        let queue = WriteQueue()
        let writer = Task { await queue.next() }
        try? await Task.sleep(for: .milliseconds(20))
        writer.cancel()
        let end = await writer.value
        #expect(end.outcomes.isEmpty && end.finished)
    }
}
