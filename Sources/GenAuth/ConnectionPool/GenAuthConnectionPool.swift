import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// Keep-alive HTTP/1.1 connections to GenAuth, written on purpose instead of using AsyncHTTPClient (the
/// one deliberate departure from the ecosystem's libraries here). Why: at volume the daemon's CPU per
/// job is its main cost, and on the bench (`sms-bench --scenarios client`) AsyncHTTPClient alone cost
/// 81 µs of CPU per call, more than the whole budget of 60 µs per job. It is general-purpose: request
/// and connection state machines, a Swift task and two thread hops per call, head and body flushed as
/// two writes; none of that is configurable. This pool does only what GenAuth needs: small requests,
/// one at a time per connection (no pipelining), each in one flush; as many connections as calls in
/// flight; a deadline per request; TLS for `https`; answers passed to a callback on the loop, so the
/// dispatcher needs no task per call. NIO's own HTTP/1 encoder and decoder (llhttp) do the protocol.
/// Measured: 27 µs per call.
///
/// The bookkeeping (which connections exist and what each is doing, which calls wait, whether the
/// pool is shut down) and every decision about it live in `StateMachine`, a pure value tested without
/// sockets. This class turns events (a call submitted, a connection opened, answered or closed, a
/// deadline passed) into the machine's events and does the I/O its actions ask for.
///
/// Every mutable field is touched on `eventLoop` only (one thread), so there are no locks; that is
/// what the `@unchecked Sendable` stands for.
final class GenAuthConnectionPool: @unchecked Sendable {
    typealias Endpoint = GenAuthEndpoint

    /// One request from submission to completion. Loop-confined like the pool.
    final class Call {
        let id: CallID
        let head: HTTPRequestHead
        let body: ByteBuffer
        let timeout: TimeAmount
        let completion: @Sendable (Result<HTTPAnswer, HTTPCallError>) -> Void
        var deadline: Scheduled<Void>?
        private(set) var isDone = false
        /// Holds the call (in `calls`) until it completes.
        private let pool: GenAuthConnectionPool

        init(id: CallID, request: Request, pool: GenAuthConnectionPool) {
            self.id = id
            self.head = request.head
            self.body = request.body
            self.timeout = request.timeout
            self.completion = request.completion
            self.pool = pool
        }

        func finish(_ result: Result<HTTPAnswer, HTTPCallError>) {
            guard !isDone else { return }
            isDone = true
            deadline?.cancel()
            deadline = nil
            pool.calls[id] = nil
            completion(result)
        }
    }

    /// One open connection and its handler. Loop-confined like the pool (hence `@unchecked`).
    final class Connection: @unchecked Sendable {
        let id: ConnectionID
        let channel: any NIOCore.Channel
        let handler: AnswerHandler

        init(id: ConnectionID, channel: any NIOCore.Channel, handler: AnswerHandler) {
            self.id = id
            self.channel = channel
            self.handler = handler
        }
    }

    let eventLoop: EventLoop
    private let endpoint: Endpoint
    private let connectTimeout: TimeAmount
    private let tlsContext: NIOSSLContext?
    /// Idle connections older than this are closed rather than reused: a server that closes idle
    /// connections (commonly after 60 s) could otherwise close one just as a request goes out on it.
    static let idleLimit = TimeAmount.seconds(30)
    static let maximumBodyBytes = 64 * 1024

    // Loop-confined state.
    /// The bookkeeping; the two dictionaries below hold what its IDs stand for.
    private var machine: StateMachine
    /// Calls submitted and not yet completed (a call leaves when it completes, however).
    private var calls: [CallID: Call] = [:]
    /// Connections open (registered once connected, until their channel goes inactive).
    private var connections: [ConnectionID: Connection] = [:]
    private var nextCallID = 0

    /// `tls` applies to `https` endpoints: the system's trust roots and full verification by default
    /// (tests pass one that trusts their own certificate).
    init(
        endpoint: Endpoint, eventLoop: EventLoop, maximumConnections: Int, connectTimeout: TimeAmount,
        tls: TLSConfiguration = .makeClientConfiguration()
    ) throws {
        self.endpoint = endpoint
        self.eventLoop = eventLoop
        self.machine = StateMachine(maximumConnections: maximumConnections, idleLimit: GenAuthConnectionPool.idleLimit)
        self.connectTimeout = connectTimeout
        self.tlsContext = endpoint.tls ? try NIOSSLContext(configuration: tls) : nil
    }

    /// The request head for `method {basePath}{path}` with `headers`; `execute` adds `content-length`.
    /// Header values come from configuration; one that could split the request (CR, LF, NUL) is
    /// refused here, once, instead of by NIO's validator on every write (a twentieth of the CPU per call).
    func head(_ method: HTTPMethod, path: String, headers: HTTPHeaders = [:]) throws -> HTTPRequestHead {
        var all = HTTPHeaders()
        all.add(name: "host", value: endpoint.hostHeader)
        for (name, value) in headers {
            guard Self.isSafeHeader(name: name, value: value) else {
                throw HTTPCallError(code: .badRequest, description: "header \(name) has a character HTTP does not allow")
            }
            all.add(name: name, value: value)
        }
        return HTTPRequestHead(version: .http1_1, method: method, uri: endpoint.basePath + path, headers: all)
    }

    /// See `GenAuthEndpoint.isSafeHeader(name:value:)`.
    static func isSafeHeader(name: String, value: String) -> Bool {
        GenAuthEndpoint.isSafeHeader(name: name, value: value)
    }

    /// One request to send: `completion` runs on the pool's loop with the answer or an `HTTPCallError`
    /// within `timeout`, counted from when the request is handed to the pool (`notBefore`, if later
    /// than now: the rate limiter's slot).
    struct Request: Sendable {
        var head: HTTPRequestHead
        var body: ByteBuffer
        var timeout: TimeAmount
        var notBefore: NIODeadline?
        var completion: @Sendable (Result<HTTPAnswer, HTTPCallError>) -> Void

        init(
            head: HTTPRequestHead, body: ByteBuffer, timeout: TimeAmount, notBefore: NIODeadline? = nil,
            completion: @escaping @Sendable (Result<HTTPAnswer, HTTPCallError>) -> Void
        ) {
            self.head = head
            self.head.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
            self.body = body
            self.timeout = timeout
            self.notBefore = notBefore
            self.completion = completion
        }
    }

    /// Hands `requests` to the loop together (one wake-up of its thread for the lot); each is sent
    /// in one flush on an idle or new connection.
    func execute(_ requests: [Request]) {
        guard !requests.isEmpty else { return }
        eventLoop.execute {
            let now = NIODeadline.now()
            for request in requests {
                if let notBefore = request.notBefore, notBefore > now {
                    self.eventLoop.assumeIsolated().scheduleTask(deadline: notBefore) { self.submit(request) }
                } else {
                    self.submit(request)
                }
            }
        }
    }

    /// One request, answered through a future (the management token and the start-up probe).
    func execute(head: HTTPRequestHead, body: ByteBuffer, timeout: TimeAmount) -> EventLoopFuture<HTTPAnswer> {
        let promise = eventLoop.makePromise(of: HTTPAnswer.self)
        execute([Request(head: head, body: body, timeout: timeout) { promise.completeWith($0.mapError { $0 }) }])
        return promise.futureResult
    }

    /// Fails waiting calls, closes every connection. Calls in flight fail as their connections close.
    func shutdown() async {
        let closed: EventLoopFuture<Void> = eventLoop.flatSubmit {
            let action = self.machine.shutdown()
            // The waiting calls fail first, then the connections close (here, so their closes can be
            // waited for); connections still opening are closed as they open.
            self.run(StateMachine.Action(call: action.call))
            let channels = action.close.compactMap { self.connections[$0]?.channel }
            return EventLoopFuture.andAllComplete(channels.map { $0.close() }, on: self.eventLoop)
        }
        try? await closed.get()
    }

    /// The connections open now (for the test that checks closed ones are released).
    func openConnections() -> EventLoopFuture<[Connection]> {
        eventLoop.submit { Array(self.connections.values) }
    }

    // MARK: - On the loop: events in

    private func submit(_ request: Request) {
        let call = Call(id: CallID(nextCallID), request: request, pool: self)
        nextCallID += 1
        calls[call.id] = call
        // A call submitted after shutdown fails at once (the machine says so): nothing to time out.
        if !machine.isShutDown {
            call.deadline = eventLoop.assumeIsolated().scheduleTask(in: request.timeout) { [self] in
                expire(call)
            }
        }
        run(machine.submit(call.id, now: .now()))
    }

    private func expire(_ call: Call) {
        guard !call.isDone else { return }
        run(machine.timedOut(call.id))
    }

    /// A connection's answer is read and it may carry the next call (from its `AnswerHandler`).
    fileprivate func becameIdle(_ connection: Connection) {
        run(machine.answered(connection.id, now: .now()))
    }

    /// A registered connection's channel went inactive (from its `AnswerHandler`).
    fileprivate func closed(_ connection: Connection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        run(machine.closed(connection.id))
    }

    // MARK: - On the loop: actions out

    /// Does what the machine decided, in the order `StateMachine.Action` gives. Any of it may bring
    /// further events at once (closing a channel reports it closed; a call's completion runs); the
    /// machine has already recorded its decisions, so those are handled as they come.
    /// `connectError` describes a failed connect, for the call that gets the failure.
    private func run(_ action: StateMachine.Action, connectError: String? = nil) {
        switch action.call {
        case .none:
            break
        case .send(let callID, let connectionID):
            send(callID, on: connectionID)
        case .fail(let callID, let failure):
            failCall(callID, failure, connectError: connectError)
        case .failAll(let callIDs, let failure):
            for callID in callIDs { failCall(callID, failure, connectError: connectError) }
        }
        for id in action.close { close(id) }
        for id in action.connect { connect(id) }
    }

    private func send(_ callID: CallID, on connectionID: ConnectionID) {
        guard let connection = connections[connectionID], connection.channel.isActive else {
            // Closed before its `closed` event reached the machine (an idle connection the server
            // dropped): nothing was written; the machine closes it and places the call again.
            run(machine.connectionInactive(connectionID, now: .now()))
            return
        }
        guard let call = calls[callID] else {
            // Cannot happen (a call leaves the machine's queue before it completes); if it did, the
            // connection would carry nothing: it is free again.
            run(machine.answered(connectionID, now: .now()))
            return
        }
        connection.handler.start(call)
        let channel = connection.channel
        channel.write(HTTPClientRequestPart.head(call.head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(call.body)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    private func failCall(_ callID: CallID, _ failure: StateMachine.Failure, connectError: String?) {
        guard let call = calls[callID] else { return }
        call.finish(.failure(httpError(failure, for: call, connectError: connectError)))
    }

    private func httpError(_ failure: StateMachine.Failure, for call: Call, connectError: String?) -> HTTPCallError {
        switch failure {
        case .shutDown:
            return HTTPCallError(code: .shutDown, description: "the GenAuth client is shut down")
        case .shuttingDown:
            return HTTPCallError(code: .shutDown, description: "the GenAuth client is shutting down")
        case .connectFailed:
            return HTTPCallError(code: .connectFailed, description: connectError ?? "cannot connect to \(endpoint.hostHeader)")
        case .timedOut(let written):
            let seconds = Double(call.timeout.nanoseconds) / 1e9
            if written {
                return HTTPCallError(code: .timedOut, description: "no answer within \(seconds) s", requestWritten: true)
            }
            return HTTPCallError(
                code: .timedOut,
                description: "no connection to GenAuth within \(seconds) s; the request was not sent")
        }
    }

    private func close(_ id: ConnectionID) {
        guard let connection = connections[id] else {
            // Not one the pool holds (cannot happen): nothing would report it closed, so say so now.
            run(machine.closed(id))
            return
        }
        connection.channel.close(promise: nil)
    }

    private func connect(_ id: ConnectionID) {
        let endpoint = self.endpoint
        let tlsContext = self.tlsContext
        let loop = eventLoop
        let pool = self
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                loop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tlsContext {
                        // SNI carries names only; for an address the certificate is checked against it.
                        let isAddress = (try? SocketAddress(ipAddress: endpoint.host, port: 0)) != nil
                        let tls = try NIOSSLClientHandler(
                            context: tlsContext, serverHostname: isAddress ? nil : endpoint.host)
                        try pipeline.addHandler(tls)
                    }
                    // Headers are checked once when a head is built (`head(_:path:headers:)`).
                    try pipeline.addHTTPClientHandlers(
                        leftOverBytesStrategy: .fireError,
                        enableOutboundHeaderValidation: false)
                    try pipeline.addHandler(AnswerHandler(pool: pool, awaitsHandshake: tlsContext != nil))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard channel.isActive,
                        let handler = try? channel.pipeline.syncOperations.handler(type: AnswerHandler.self)
                    else {
                        // Closed by the server (or TLS) before it was ours: no `closed` will come for it.
                        channel.close(promise: nil)
                        run(
                            machine.connectFailed(id),
                            connectError: "cannot connect to \(endpoint.hostHeader): closed as soon as it opened")
                        return
                    }
                    let connection = Connection(id: id, channel: channel, handler: handler)
                    handler.connection = connection
                    connections[id] = connection
                    run(machine.connected(id, now: .now()))
                case .failure(let error):
                    run(machine.connectFailed(id), connectError: "cannot connect to \(endpoint.hostHeader): \(error)")
                }
            }
    }

    /// Reads one answer per request; loop-confined.
    final class AnswerHandler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPClientResponsePart

        private let pool: GenAuthConnectionPool
        /// Weak: the connection holds this handler, and the pool holds the connection while it is open.
        fileprivate weak var connection: Connection?
        private var call: Call?
        private var head: HTTPResponseHead?
        private var body = ByteBuffer()
        /// The answer is complete and the connection may carry the next request.
        private var reusable = false
        private var closing = false
        /// Until TLS's handshake completes, a request handed to the connection is held by the TLS
        /// handler and never reaches GenAuth: a failed handshake means "certainly not sent".
        private var handshakeDone: Bool

        init(pool: GenAuthConnectionPool, awaitsHandshake: Bool) {
            self.pool = pool
            self.handshakeDone = !awaitsHandshake
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case TLSUserEvent.handshakeCompleted = event { handshakeDone = true }
            context.fireUserInboundEventTriggered(event)
        }

        fileprivate func start(_ call: Call) {
            self.call = call
            reusable = false
            head = nil
            body.clear()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let answerHead):
                head = answerHead
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= GenAuthConnectionPool.maximumBodyBytes else {
                    fail(
                        HTTPCallError(
                            code: .badAnswer,
                            description:
                                "answer body larger than \(GenAuthConnectionPool.maximumBodyBytes / 1024) KiB"), context: context)
                    return
                }
                body.writeBuffer(&chunk)
            case .end:
                guard let call, let head else {
                    // An answer nobody asked for: this connection's requests and answers are out of step.
                    fail(
                        HTTPCallError(code: .badAnswer, description: "an answer arrived with no request waiting"),
                        context: context)
                    return
                }
                self.call = nil
                self.head = nil
                // 1xx heads are consumed by the decoder; anything else ends one exchange.
                call.finish(.success(HTTPAnswer(status: Int(head.status.code), headers: head.headers, body: body)))
                body = ByteBuffer()
                if head.isKeepAlive {
                    // Back to the pool once this read is decoded, so bytes that came after the answer
                    // (a server out of step) close the connection before another call is put on it.
                    reusable = true
                } else {
                    context.close(promise: nil)
                }
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            if reusable, !closing, context.channel.isActive, let connection {
                reusable = false
                pool.becameIdle(connection)
            }
            context.fireChannelReadComplete()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            let failure: HTTPCallError
            switch error {
            case HTTPParserError.invalidEOFState:
                failure = HTTPCallError(code: .connectionLost, description: "connection closed before the answer was complete")
            case is HTTPParserError, is NIOHTTPDecoderError:
                failure = HTTPCallError(
                    code: .badAnswer, description: "GenAuth's answer is not HTTP/1.1 this client can read: \(error)")
            default:
                failure = HTTPCallError(code: .connectionLost, description: "\(error)")
            }
            fail(failure, context: context)
        }

        func channelInactive(context: ChannelHandlerContext) {
            call?.finish(
                .failure(
                    HTTPCallError(
                        code: .connectionLost,
                        description: "connection closed before the answer was complete",
                        requestWritten: handshakeDone)))
            call = nil
            if let connection { pool.closed(connection) }
            context.fireChannelInactive()
        }

        private func fail(_ error: HTTPCallError, context: ChannelHandlerContext) {
            var error = error
            // A call on this connection has been written: whatever went wrong, GenAuth may have it.
            error.requestWritten = call != nil && handshakeDone
            call?.finish(.failure(error))
            call = nil
            closing = true
            context.close(promise: nil)
        }
    }
}
