import NIOCore

extension GenAuthConnectionPool {
    /// Names one connection in the state machine. Handed out by the machine, numbered from 0 in the
    /// order it asks for connections to be opened (it is the one that decides to open them).
    struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
        let value: Int
        init(_ value: Int) { self.value = value }
        var description: String { "connection \(value)" }
    }

    /// Names one call in the state machine. Handed out by the pool, which holds the call itself.
    struct CallID: Hashable, Sendable, CustomStringConvertible {
        let value: Int
        init(_ value: Int) { self.value = value }
        var description: String { "call \(value)" }
    }

    /// The pool's bookkeeping, and nothing else: which connections exist and what each is doing, which
    /// calls wait for one, whether the pool is shut down. Every event the pool sees goes in as a
    /// method call; what the pool must do about it comes back as an `Action` (send a call on a
    /// connection, fail a call, open connections, close connections). No channels, no clock, no
    /// callbacks: the time is passed in, so every decision can be tested without a socket.
    ///
    /// The rules it keeps:
    /// - One connection being opened per waiting call, up to `maximumConnections` (counting those
    ///   opening, open and still closing): a call never waits for a connection nobody is opening.
    /// - Idle connections are reused last in, first out; one idle for `idleLimit` or longer is closed
    ///   instead (a server that closes idle connections could otherwise close it as a request goes out).
    /// - A free connection goes to the oldest waiting call.
    /// - A failed connect fails the oldest waiting call: each waiting call costs at most one failed
    ///   attempt (no retry loop against a dead host), and the others still have theirs under way.
    /// - A call sent on a connection and timed out closes that connection: its answer could still
    ///   arrive and would be taken for the next call's.
    ///
    /// Whether an idle connection is still open is the one fact the machine cannot know before its
    /// `closed` event arrives: the pool checks the channel when it is about to write a call on it and,
    /// if it is closed already, reports `connectionInactive`, which closes it and places the call again.
    struct StateMachine {
        /// What one connection is doing.
        enum ConnectionState: Hashable {
            /// Being opened (TCP, then TLS if any).
            case connecting
            /// Open, carrying nothing, since then.
            case idle(since: NIODeadline)
            /// Carrying this call (written, or being written, and not yet freed by its answer).
            case leased(CallID)
            /// Asked to close. Still counted against the maximum until `closed` reports it gone, so a
            /// replacement never makes one connection more than allowed.
            case closing
        }

        /// Why the machine fails a call. (A call on a connection that breaks is failed by the
        /// connection's reader, not here.)
        enum Failure: Hashable {
            /// Submitted after `shutdown()`.
            case shutDown
            /// Was waiting for a connection when the pool shut down.
            case shuttingDown
            /// The connection attempt this call was counting on failed.
            case connectFailed
            /// The call's deadline passed; `written`: it had been handed to a connection, so GenAuth
            /// may have acted on it.
            case timedOut(written: Bool)
        }

        /// What happens to a call.
        enum CallAction: Hashable {
            case none
            /// Write the call on the connection (now leased to it).
            case send(CallID, on: ConnectionID)
            /// Complete the call with this failure.
            case fail(CallID, Failure)
            /// Complete each of these calls with this failure (shutdown: oldest first).
            case failAll([CallID], Failure)
        }

        /// What the pool must do after an event, in this order: the call's part, then `close`, then
        /// `connect`. (The call comes first: a call timing out must fail as timed out before closing
        /// its connection makes the reader fail it as "connection lost".)
        struct Action: Hashable {
            var call: CallAction = .none
            /// Open these connections (each now `connecting`; answer with `connected` or `connectFailed`).
            var connect: [ConnectionID] = []
            /// Close these connections (each now `closing`; answer with `closed` when they are gone).
            var close: [ConnectionID] = []
        }

        let maximumConnections: Int
        let idleLimit: TimeAmount
        /// Every connection opening, open or closing.
        private(set) var connections: [ConnectionID: ConnectionState] = [:]
        /// The idle connections, most recently freed last (reused from the end).
        private var idle: [ConnectionID] = []
        /// Calls waiting for a connection, oldest first.
        private var waiting = CircularBuffer<CallID>()
        /// How many of `connections` are `connecting` (kept, not counted, since it is checked per call).
        private var connecting = 0
        private var nextConnectionID = 0
        private(set) var isShutDown = false

        /// `maximumConnections` below 1 counts as 1.
        init(maximumConnections: Int, idleLimit: TimeAmount) {
            self.maximumConnections = max(1, maximumConnections)
            self.idleLimit = idleLimit
        }

        /// The calls waiting for a connection, oldest first.
        var waitingCalls: [CallID] { Array(waiting) }

        // MARK: - Events

        /// A new call: onto the most recently freed idle connection that is not too old (older ones
        /// are closed on the way), else it waits and connections are opened for it.
        mutating func submit(_ call: CallID, now: NIODeadline) -> Action {
            guard !isShutDown else { return Action(call: .fail(call, .shutDown)) }
            var close: [ConnectionID] = []
            while let id = idle.popLast() {
                guard case .idle(let since) = connections[id] else { continue }
                if now - since < idleLimit {
                    connections[id] = .leased(call)
                    return Action(call: .send(call, on: id), close: close)
                }
                connections[id] = .closing
                close.append(id)
            }
            waiting.append(call)
            return Action(call: .none, connect: connectIfNeeded(), close: close)
        }

        /// The connection leased to a call (by `submit`, `connected` or `answered`) was found closed
        /// when the pool came to write the call on it, before its `closed` event: close it, and place
        /// the call again as if it had just been submitted (nothing was written).
        mutating func connectionInactive(_ id: ConnectionID, now: NIODeadline) -> Action {
            guard case .leased(let call) = connections[id] else { return Action() }
            connections[id] = .closing
            var action = submit(call, now: now)
            action.close.insert(id, at: 0)
            return action
        }

        /// A connection opened: it takes the oldest waiting call, or waits idle for one; after
        /// shutdown it is closed.
        mutating func connected(_ id: ConnectionID, now: NIODeadline) -> Action {
            guard case .connecting = connections[id] else {
                // Not one the machine asked for: nothing would ever use it.
                return Action(close: [id])
            }
            connecting -= 1
            guard !isShutDown else {
                connections[id] = .closing
                return Action(close: [id])
            }
            return becameFree(id, now: now)
        }

        /// Opening a connection failed (it never counted as open to anyone): the oldest waiting call
        /// fails, and connections are opened for the rest if they are now short of one each.
        mutating func connectFailed(_ id: ConnectionID) -> Action {
            guard case .connecting = connections[id] else { return Action() }
            connections[id] = nil
            connecting -= 1
            var action = Action()
            if let call = waiting.popFirst() { action.call = .fail(call, .connectFailed) }
            action.connect = connectIfNeeded()
            return action
        }

        /// A connection's call was answered and the connection can carry another: the oldest waiting
        /// call gets it, or it waits idle from `now`. Ignored for a connection that is closing (a
        /// late answer on a connection whose call timed out does not make it reusable).
        mutating func answered(_ id: ConnectionID, now: NIODeadline) -> Action {
            guard case .leased = connections[id] else { return Action() }
            return becameFree(id, now: now)
        }

        /// A connection is gone (whatever closed it). Calls still waiting may have counted on it.
        mutating func closed(_ id: ConnectionID) -> Action {
            guard let state = connections.removeValue(forKey: id) else { return Action() }
            switch state {
            case .connecting:
                // The pool reports connects through `connected`/`connectFailed`; handled anyway.
                connecting -= 1
            case .idle:
                idle.removeAll { $0 == id }
            case .leased, .closing:
                // A call on it is failed by the connection's reader, which saw it close.
                break
            }
            return Action(connect: connectIfNeeded())
        }

        /// A call's deadline passed. Waiting: it leaves the queue, certainly not sent. Leased on a
        /// connection: it was written, and the connection closes (its answer may still come, and would
        /// be taken for the next call's). Neither: it went out on a connection that is closing now
        /// (shutdown), so it counts as written too.
        mutating func timedOut(_ call: CallID) -> Action {
            if let index = waiting.firstIndex(of: call) {
                waiting.remove(at: index)
                return Action(call: .fail(call, .timedOut(written: false)))
            }
            if let id = connections.first(where: { $0.value == .leased(call) })?.key {
                connections[id] = .closing
                return Action(call: .fail(call, .timedOut(written: true)), close: [id])
            }
            return Action(call: .fail(call, .timedOut(written: true)))
        }

        /// Fails every waiting call and closes every open connection (again, for those closing, so the
        /// pool can wait for them all); those still opening are closed as they open. Calls on open
        /// connections fail as their connections close.
        mutating func shutdown() -> Action {
            isShutDown = true
            let failed = Array(waiting)
            waiting.removeAll()
            idle.removeAll()
            var toClose: [ConnectionID] = []
            for (id, state) in connections where state != .connecting { toClose.append(id) }
            toClose.sort { $0.value < $1.value }
            for id in toClose { connections[id] = .closing }
            return Action(call: failed.isEmpty ? .none : .failAll(failed, .shuttingDown), close: toClose)
        }

        // MARK: - Rules

        /// A connection that is free: the oldest waiting call, or idle.
        private mutating func becameFree(_ id: ConnectionID, now: NIODeadline) -> Action {
            if let call = waiting.popFirst() {
                connections[id] = .leased(call)
                return Action(call: .send(call, on: id))
            }
            connections[id] = .idle(since: now)
            idle.append(id)
            return Action()
        }

        /// One connection being opened per waiting call, up to the maximum.
        private mutating func connectIfNeeded() -> [ConnectionID] {
            var opened: [ConnectionID] = []
            while !isShutDown && connections.count < maximumConnections && connecting < waiting.count {
                let id = ConnectionID(nextConnectionID)
                nextConnectionID += 1
                connections[id] = .connecting
                connecting += 1
                opened.append(id)
            }
            return opened
        }
    }
}
