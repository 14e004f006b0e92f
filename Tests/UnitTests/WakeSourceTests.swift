import Testing

@testable import SMSEngine

/// The ticker's schedule without a clock: `.tick` every poll interval, `.clock` in between so the claim
/// loop comes round at least every clock interval whatever the poll interval.
@Suite("Wake source")
struct WakeSourceTests {
    func schedule(poll: Duration, clock: Duration, count: Int) -> [(wait: Duration, event: DispatchEvent)] {
        var ticker = WakeSource.Ticker(pollInterval: poll, clockInterval: clock)
        return (0..<count).map { _ in ticker.next() }
    }

    @Test("a poll interval longer than the clock's: clocks in between, each tick exactly a poll interval after the last")
    func clocksBetweenTicks() {
        let events = schedule(poll: .seconds(25), clock: .seconds(10), count: 6)
        #expect(events.map(\.event) == [.clock, .clock, .tick, .clock, .clock, .tick])
        #expect(events.map(\.wait) == [.seconds(10), .seconds(10), .seconds(5), .seconds(10), .seconds(10), .seconds(5)])
        // An hour's poll interval: the loop still comes round every 10 s (systemd's watchdog is 30 s).
        let hour = schedule(poll: .seconds(3600), clock: .seconds(10), count: 360)
        #expect(hour.allSatisfy { $0.wait <= .seconds(10) })
        #expect(hour.map(\.event).filter { $0 == .tick }.count == 1 && hour.last?.event == .tick)
    }

    @Test("a poll interval within the clock's: ticks only, a poll interval apart")
    func ticksOnly() {
        let events = schedule(poll: .milliseconds(200), clock: .seconds(10), count: 4)
        #expect(events.allSatisfy { $0.event == .tick && $0.wait == .milliseconds(200) })
        let equal = schedule(poll: .seconds(10), clock: .seconds(10), count: 2)
        #expect(equal.allSatisfy { $0.event == .tick && $0.wait == .seconds(10) })
    }
}
