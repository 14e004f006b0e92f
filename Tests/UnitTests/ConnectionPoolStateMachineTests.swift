import NIOCore
import Testing

@testable import GenAuth

/// The connection pool's bookkeeping, event by event, with no sockets and no clock: each test feeds
/// the machine events and checks the exact actions it asks the pool for.
@Suite("Connection pool state machine")
struct ConnectionPoolStateMachineTests {
    typealias Machine = GenAuthConnectionPool.StateMachine
    typealias Action = Machine.Action
    typealias ConnectionID = GenAuthConnectionPool.ConnectionID
    typealias CallID = GenAuthConnectionPool.CallID

    /// An arbitrary instant; every test measures from it.
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let idleLimit = TimeAmount.seconds(30)

    func call(_ value: Int) -> CallID { CallID(value) }
    /// The machine numbers connections from 0 in the order it asks for them.
    func connection(_ value: Int) -> ConnectionID { ConnectionID(value) }
    func at(_ seconds: Int64) -> NIODeadline { Self.t0 + TimeAmount.seconds(seconds) }

    /// Records an issue at the caller's line when the machine's action is not the expected one. (The
    /// event is a mutating call, so it is made here, outside `#expect`'s expansion.)
    func check(_ action: Action, _ expected: Action, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(action == expected, sourceLocation: sourceLocation)
    }

    func makeMachine(maximum: Int) -> Machine {
        Machine(maximumConnections: maximum, idleLimit: Self.idleLimit)
    }

    /// A machine holding `count` idle connections (0 ..< count), freed one second apart from `at(1)`,
    /// so connection `count - 1` is the most recently freed. Calls 100 ... went out on them.
    func makeMachineWithIdle(_ count: Int, maximum: Int, sourceLocation: SourceLocation = #_sourceLocation) -> Machine {
        var machine = makeMachine(maximum: maximum)
        for index in 0..<count {
            check(
                machine.submit(call(100 + index), now: at(0)), Action(connect: [connection(index)]),
                sourceLocation: sourceLocation)
        }
        for index in 0..<count {
            check(
                machine.connected(connection(index), now: at(0)),
                Action(call: .send(call(100 + index), on: connection(index))), sourceLocation: sourceLocation)
        }
        for index in 0..<count {
            check(machine.answered(connection(index), now: at(1 + Int64(index))), Action(), sourceLocation: sourceLocation)
        }
        return machine
    }

    @Test("with no connections, one is opened per waiting call, up to the maximum")
    func connectsPerWaitingCall() {
        var machine = makeMachine(maximum: 3)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.submit(call(1), now: at(0)), Action(connect: [connection(1)]))
        check(machine.submit(call(2), now: at(0)), Action(connect: [connection(2)]))
        // At the maximum: the fourth call waits for one of the three.
        check(machine.submit(call(3), now: at(0)), Action())
        #expect(machine.waitingCalls == [call(0), call(1), call(2), call(3)])
        #expect(machine.connections.count == 3)
        #expect(machine.connections.values.allSatisfy { $0 == .connecting })
    }

    @Test("a connection that opens takes the oldest waiting call; each answer frees it for the next")
    func connectedTakesTheOldestCall() {
        var machine = makeMachine(maximum: 1)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.submit(call(1), now: at(0)), Action())
        check(machine.connected(connection(0), now: at(1)), Action(call: .send(call(0), on: connection(0))))
        #expect(machine.waitingCalls == [call(1)])
        check(machine.answered(connection(0), now: at(2)), Action(call: .send(call(1), on: connection(0))))
        #expect(machine.waitingCalls.isEmpty)
        check(machine.answered(connection(0), now: at(3)), Action())
        #expect(machine.connections[connection(0)] == .idle(since: at(3)))
    }

    @Test("an idle connection is reused: no new connection")
    func reusesAnIdleConnection() {
        var machine = makeMachineWithIdle(1, maximum: 4)
        #expect(machine.connections[connection(0)] == .idle(since: at(1)))
        check(machine.submit(call(0), now: at(5)), Action(call: .send(call(0), on: connection(0))))
        #expect(machine.connections[connection(0)] == .leased(call(0)))
        #expect(machine.connections.count == 1)
        #expect(machine.waitingCalls.isEmpty)
    }

    @Test("idle connections are reused last in, first out")
    func reusesTheMostRecentlyFreed() {
        var machine = makeMachineWithIdle(3, maximum: 4)
        check(machine.submit(call(0), now: at(10)), Action(call: .send(call(0), on: connection(2))))
        check(machine.submit(call(1), now: at(10)), Action(call: .send(call(1), on: connection(1))))
        check(machine.answered(connection(2), now: at(11)), Action())
        check(machine.submit(call(2), now: at(12)), Action(call: .send(call(2), on: connection(2))))
        check(machine.submit(call(3), now: at(12)), Action(call: .send(call(3), on: connection(0))))
        // None idle now: the next call waits and a fourth connection is opened.
        check(machine.submit(call(4), now: at(12)), Action(connect: [connection(3)]))
    }

    @Test("an idle connection as old as the idle limit is closed, not reused, and a new one is opened")
    func staleIdleConnectionIsReplaced() {
        // Room for another connection: it is opened at once.
        var roomy = makeMachineWithIdle(1, maximum: 2)
        check(roomy.submit(call(0), now: at(1) + Self.idleLimit), Action(connect: [connection(1)], close: [connection(0)]))
        #expect(roomy.connections[connection(0)] == .closing)
        #expect(roomy.waitingCalls == [call(0)])
        check(roomy.connected(connection(1), now: at(32)), Action(call: .send(call(0), on: connection(1))))

        // At the maximum: the stale one counts until it is gone, then the replacement is opened.
        var full = makeMachineWithIdle(1, maximum: 1)
        check(full.submit(call(0), now: at(1) + Self.idleLimit), Action(close: [connection(0)]))
        check(full.closed(connection(0)), Action(connect: [connection(1)]))
        check(full.connected(connection(1), now: at(40)), Action(call: .send(call(0), on: connection(1))))

        // Just under the limit it is still reused.
        var fresh = makeMachineWithIdle(1, maximum: 1)
        check(
            fresh.submit(call(0), now: at(1) + Self.idleLimit - TimeAmount.nanoseconds(1)),
            Action(call: .send(call(0), on: connection(0))))
    }

    @Test("an idle connection found closed when its call is to be written is closed; the call tries the next")
    func inactiveIdleConnection() {
        var machine = makeMachineWithIdle(2, maximum: 2)
        check(machine.submit(call(0), now: at(5)), Action(call: .send(call(0), on: connection(1))))
        check(
            machine.connectionInactive(connection(1), now: at(5)),
            Action(call: .send(call(0), on: connection(0)), close: [connection(1)]))
        // None left: the call waits, and nothing is opened while both closing connections still count.
        check(machine.connectionInactive(connection(0), now: at(5)), Action(close: [connection(0)]))
        #expect(machine.waitingCalls == [call(0)])
        check(machine.closed(connection(1)), Action(connect: [connection(2)]))
    }

    @Test("a failed connect fails the oldest waiting call; the others keep waiting, one connection each")
    func connectFailureFailsTheOldest() {
        var machine = makeMachine(maximum: 2)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.submit(call(1), now: at(0)), Action(connect: [connection(1)]))
        check(machine.submit(call(2), now: at(0)), Action())
        check(machine.connectFailed(connection(0)), Action(call: .fail(call(0), .connectFailed), connect: [connection(2)]))
        #expect(machine.waitingCalls == [call(1), call(2)])
        #expect(machine.connections[connection(0)] == nil)
        check(machine.connected(connection(1), now: at(1)), Action(call: .send(call(1), on: connection(1))))
        check(machine.connected(connection(2), now: at(1)), Action(call: .send(call(2), on: connection(2))))

        // With nobody waiting any more, a failed connect fails nobody and opens nothing.
        var abandoned = makeMachine(maximum: 2)
        check(abandoned.submit(call(5), now: at(0)), Action(connect: [connection(0)]))
        check(abandoned.timedOut(call(5)), Action(call: .fail(call(5), .timedOut(written: false))))
        check(abandoned.connectFailed(connection(0)), Action())
        #expect(abandoned.connections.isEmpty)
    }

    @Test("a call timed out while waiting leaves the queue; a connection opened later does not get it")
    func timedOutWhileWaiting() {
        var machine = makeMachine(maximum: 2)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.submit(call(1), now: at(0)), Action(connect: [connection(1)]))
        check(machine.timedOut(call(0)), Action(call: .fail(call(0), .timedOut(written: false))))
        #expect(machine.waitingCalls == [call(1)])
        check(machine.connected(connection(0), now: at(1)), Action(call: .send(call(1), on: connection(0))))
        check(machine.connected(connection(1), now: at(1)), Action())
        #expect(machine.connections[connection(1)] == .idle(since: at(1)))
    }

    @Test("a call timed out after it was sent closes its connection, which is not reused even if answered")
    func timedOutAfterSending() {
        var machine = makeMachine(maximum: 1)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.connected(connection(0), now: at(0)), Action(call: .send(call(0), on: connection(0))))
        check(machine.timedOut(call(0)), Action(call: .fail(call(0), .timedOut(written: true)), close: [connection(0)]))
        #expect(machine.connections[connection(0)] == .closing)
        // A late answer does not make it reusable; the next call waits for a fresh connection.
        check(machine.answered(connection(0), now: at(1)), Action())
        check(machine.submit(call(1), now: at(1)), Action())
        check(machine.closed(connection(0)), Action(connect: [connection(1)]))
        check(machine.connected(connection(1), now: at(2)), Action(call: .send(call(1), on: connection(1))))
    }

    @Test("a connection that closes makes room: waiting calls get connections opened for them")
    func closedConnectionTriggersConnects() {
        var machine = makeMachine(maximum: 1)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.connected(connection(0), now: at(0)), Action(call: .send(call(0), on: connection(0))))
        check(machine.submit(call(1), now: at(0)), Action())
        check(machine.closed(connection(0)), Action(connect: [connection(1)]))
        check(machine.connected(connection(1), now: at(1)), Action(call: .send(call(1), on: connection(1))))
        // An idle connection that closes leaves the idle ones: the next call opens a new one.
        check(machine.answered(connection(1), now: at(2)), Action())
        check(machine.closed(connection(1)), Action())
        check(machine.submit(call(2), now: at(3)), Action(connect: [connection(2)]))
        // A connection already gone is not gone twice.
        check(machine.closed(connection(1)), Action())
        #expect(machine.connections.count == 1)
    }

    @Test("shutdown fails the waiting calls and closes every open connection; those opening close as they open")
    func shutdownFailsAndCloses() {
        var machine = makeMachine(maximum: 3)
        check(machine.submit(call(0), now: at(0)), Action(connect: [connection(0)]))
        check(machine.submit(call(1), now: at(0)), Action(connect: [connection(1)]))
        check(machine.connected(connection(0), now: at(0)), Action(call: .send(call(0), on: connection(0))))
        check(machine.connected(connection(1), now: at(0)), Action(call: .send(call(1), on: connection(1))))
        check(machine.answered(connection(1), now: at(1)), Action())
        check(machine.submit(call(2), now: at(2)), Action(call: .send(call(2), on: connection(1))))
        check(machine.submit(call(3), now: at(2)), Action(connect: [connection(2)]))
        check(machine.submit(call(4), now: at(2)), Action())
        // Now: connections 0 and 1 carry calls 0 and 2, connection 2 is opening, calls 3 and 4 wait.
        check(
            machine.shutdown(),
            Action(
                call: .failAll([call(3), call(4)], .shuttingDown),
                close: [connection(0), connection(1)]))
        #expect(machine.isShutDown)
        #expect(machine.waitingCalls.isEmpty)
        check(machine.connected(connection(2), now: at(3)), Action(close: [connection(2)]))
        // A late answer on a closing connection does not hand it out.
        check(machine.answered(connection(1), now: at(3)), Action())
        // Call 0 went out on a connection that is closing: if its deadline passes first, it was written.
        check(machine.timedOut(call(0)), Action(call: .fail(call(0), .timedOut(written: true))))
        // Gone connections are not replaced after shutdown.
        check(machine.closed(connection(0)), Action())
        check(machine.closed(connection(1)), Action())
        check(machine.closed(connection(2)), Action())
        #expect(machine.connections.isEmpty)
    }

    @Test("shutdown closes idle connections; a call submitted after it fails at once and opens nothing")
    func submitAfterShutdown() {
        var machine = makeMachineWithIdle(1, maximum: 2)
        check(machine.shutdown(), Action(close: [connection(0)]))
        check(machine.submit(call(9), now: at(2)), Action(call: .fail(call(9), .shutDown)))
        #expect(machine.waitingCalls.isEmpty)
        check(machine.closed(connection(0)), Action())
        check(machine.submit(call(10), now: at(3)), Action(call: .fail(call(10), .shutDown)))
        #expect(machine.connections.isEmpty)
    }
}
