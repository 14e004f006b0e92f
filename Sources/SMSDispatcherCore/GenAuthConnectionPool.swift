import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP answer, whole (GenAuth's are a few hundred bytes).
struct HTTPAnswer: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// Why a request got no answer.
struct HTTPCallError: Error, CustomStringConvertible {
    enum Code: Sendable, Equatable {
        /// No answer within the request's deadline (which includes waiting for and opening a connection).
        case timedOut
        /// The connection (TCP or TLS) could not be opened.
        case connectFailed
        /// The connection closed or failed before the answer was complete.
        case connectionLost
        /// The answer was not HTTP/1.1 we can read, or larger than we read.
        case badAnswer
        /// The pool was shut down.
        case shutDown
        /// The request itself cannot be sent (a header HTTP does not allow).
        case badRequest
    }

    let code: Code
    let description: String
    /// Whether any of the request had been handed to the connection: if so GenAuth may have acted on
    /// it; if not, it certainly did not.
    var requestWritten = false
}

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
/// Every mutable field is touched on `eventLoop` only (one thread), so there are no locks; that is
/// what the `@unchecked Sendable` stands for.
final class GenAuthConnectionPool: @unchecked Sendable {
    struct Endpoint: Sendable, Equatable {
        var tls: Bool
        var host: String
        var port: Int
        /// Path prefix from the configured host URL, without a trailing slash ("" for none).
        var basePath: String

        /// Parses `http(s)://host[:port][/prefix]`.
        init(url: String) throws {
            var rest = Substring(url)
            if rest.lowercased().hasPrefix("https://") {
                tls = true
                rest = rest.dropFirst(8)
            } else if rest.lowercased().hasPrefix("http://") {
                tls = false
                rest = rest.dropFirst(7)
            } else {
                throw HTTPCallError(code: .connectFailed, description: "GenAuth host \(url) is not an http:// or https:// URL")
            }
            let authority = rest.prefix { $0 != "/" }
            var path = String(rest.dropFirst(authority.count))
            while path.hasSuffix("/") { path.removeLast() }
            basePath = path
            if authority.hasPrefix("[") {
                // [IPv6]:port
                guard let close = authority.firstIndex(of: "]") else {
                    throw HTTPCallError(code: .connectFailed, description: "GenAuth host \(url): unterminated IPv6 address")
                }
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : (tls ? 443 : 80)
            } else if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                port = Int(authority[authority.index(after: colon)...]) ?? -1
            } else {
                host = String(authority)
                port = tls ? 443 : 80
            }
            guard !host.isEmpty, (1...65535).contains(port) else {
                throw HTTPCallError(code: .connectFailed, description: "GenAuth host \(url) has no valid host and port")
            }
            // A name or an address; no user info, query or fragment (they would end up in the request).
            let hostCharacters = authority.hasPrefix("[") ? Set("0123456789abcdefABCDEF:.") : Set(
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
            guard host.allSatisfy(hostCharacters.contains), !basePath.contains(where: { "?#% ".contains($0) }) else {
                throw HTTPCallError(code: .connectFailed, description:
                    "GenAuth host \(url) must be scheme://host[:port][/path], without user info, query or fragment")
            }
        }

        /// The `host` header: the port only when it is not the scheme's default.
        var hostHeader: String {
            let name = host.contains(":") ? "[\(host)]" : host
            return port == (tls ? 443 : 80) ? name : "\(name):\(port)"
        }
    }

    /// One request from submission to answer. Loop-confined like the pool.
    final class Call {
        enum State {
            case waiting
            case sent(Connection)
            case done
        }

        let head: HTTPRequestHead
        let body: ByteBuffer
        let completion: @Sendable (Result<HTTPAnswer, HTTPCallError>) -> Void
        var state = State.waiting
        var deadline: Scheduled<Void>?

        init(_ request: Request) {
            self.head = request.head
            self.body = request.body
            self.completion = request.completion
        }

        var isDone: Bool {
            if case .done = state { return true }
            return false
        }

        func finish(_ result: Result<HTTPAnswer, HTTPCallError>) {
            guard !isDone else { return }
            state = .done
            deadline?.cancel()
            deadline = nil
            completion(result)
        }
    }

    /// One open connection and its handler. Loop-confined like the pool (hence `@unchecked`).
    final class Connection: @unchecked Sendable {
        let channel: any NIOCore.Channel
        let handler: AnswerHandler
        var idleSince = NIODeadline.now()

        init(channel: any NIOCore.Channel, handler: AnswerHandler) {
            self.channel = channel
            self.handler = handler
        }
    }

    let eventLoop: EventLoop
    private let endpoint: Endpoint
    private let maximumConnections: Int
    private let connectTimeout: TimeAmount
    private let tlsContext: NIOSSLContext?
    /// Idle connections older than this are closed rather than reused: a server that closes idle
    /// connections (commonly after 60 s) could otherwise close one just as a request goes out on it.
    static let idleLimit = TimeAmount.seconds(30)
    static let maximumBodyBytes = 64 * 1024

    // Loop-confined state.
    private var idle: [Connection] = []
    /// Connections open or being opened, and of those, being opened.
    private var open = 0
    private var connecting = 0
    /// Calls waiting for a connection, oldest first (a call that times out while waiting leaves).
    private var waiting = CircularBuffer<Call>()
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var isShutDown = false

    /// `tls` applies to `https` endpoints: the system's trust roots and full verification by default
    /// (tests pass one that trusts their own certificate).
    init(endpoint: Endpoint, eventLoop: EventLoop, maximumConnections: Int, connectTimeout: TimeAmount,
         tls: TLSConfiguration = .makeClientConfiguration()) throws {
        self.endpoint = endpoint
        self.eventLoop = eventLoop
        self.maximumConnections = max(1, maximumConnections)
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

    /// A header name made of RFC 9110 token characters and a value without CR, LF, NUL or other
    /// control characters but tab.
    static func isSafeHeader(name: String, value: String) -> Bool {
        let tokenPunctuation = Set("!#$%&'*+-.^_`|~".utf8)
        guard !name.isEmpty, name.utf8.allSatisfy({ byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || tokenPunctuation.contains(byte)
        }) else { return false }
        return value.utf8.allSatisfy { $0 == UInt8(ascii: "\t") || ($0 >= 0x20 && $0 != 0x7f) }
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

        init(head: HTTPRequestHead, body: ByteBuffer, timeout: TimeAmount, notBefore: NIODeadline? = nil,
             completion: @escaping @Sendable (Result<HTTPAnswer, HTTPCallError>) -> Void) {
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
            self.isShutDown = true
            while let call = self.waiting.popFirst() {
                call.finish(.failure(HTTPCallError(code: .shutDown, description: "the GenAuth client is shutting down")))
            }
            let closing = self.connections.values.map { $0.channel.close() }
            return EventLoopFuture.andAllComplete(closing, on: self.eventLoop)
        }
        try? await closed.get()
    }

    // MARK: - On the loop

    private func submit(_ request: Request) {
        let call = Call(request)
        let timeout = request.timeout
        guard !isShutDown else {
            call.finish(.failure(HTTPCallError(code: .shutDown, description: "the GenAuth client is shut down")))
            return
        }
        call.deadline = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            expire(call, after: timeout)
        }
        if let connection = takeIdle() {
            send(call, on: connection)
            return
        }
        waiting.append(call)
        connectIfNeeded()
    }

    /// One connection being opened per waiting call, up to the limit: a call never waits for a
    /// connection nobody is opening.
    private func connectIfNeeded() {
        while !isShutDown && open < maximumConnections && connecting < waiting.count { connect() }
    }

    private func expire(_ call: Call, after timeout: TimeAmount) {
        let seconds = Double(timeout.nanoseconds) / 1e9
        let state = call.state
        var error = HTTPCallError(code: .timedOut, description: "no answer within \(seconds) s")
        if case .sent = state {
            error.requestWritten = true
        } else {
            error = HTTPCallError(code: .timedOut, description: "no connection to GenAuth within \(seconds) s; the request was not sent")
        }
        call.finish(.failure(error))
        if case .waiting = state, let index = waiting.firstIndex(where: { $0 === call }) { waiting.remove(at: index) }
        // A connection with a request on it that will not be answered in time cannot be reused: its
        // answer could still arrive and would be taken for the next request's.
        if case .sent(let connection) = state { connection.channel.close(promise: nil) }
    }

    private func takeIdle() -> Connection? {
        let now = NIODeadline.now()
        while let connection = idle.popLast() {
            if connection.channel.isActive && now - connection.idleSince < Self.idleLimit { return connection }
            connection.channel.close(promise: nil)
        }
        return nil
    }

    private func send(_ call: Call, on connection: Connection) {
        call.state = .sent(connection)
        connection.handler.start(call)
        let channel = connection.channel
        channel.write(HTTPClientRequestPart.head(call.head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(call.body)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    private func connect() {
        open += 1
        connecting += 1
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
                    try pipeline.addHTTPClientHandlers(leftOverBytesStrategy: .fireError,
                                                       enableOutboundHeaderValidation: false)
                    try pipeline.addHandler(AnswerHandler(pool: pool, awaitsHandshake: tlsContext != nil))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .assumeIsolated()
            .whenComplete { [self] result in
                connecting -= 1
                switch result {
                case .success(let channel):
                    guard channel.isActive,
                          let handler = try? channel.pipeline.syncOperations.handler(type: AnswerHandler.self)
                    else {
                        // Closed by the server (or TLS) before it was ours: no `closed` will come for it.
                        channel.close(promise: nil)
                        connectFailed("cannot connect to \(endpoint.hostHeader): closed as soon as it opened")
                        return
                    }
                    let connection = Connection(channel: channel, handler: handler)
                    handler.connection = connection
                    connections[ObjectIdentifier(channel)] = connection
                    if isShutDown {
                        channel.close(promise: nil)
                    } else {
                        becameIdle(connection)
                    }
                case .failure(let error):
                    connectFailed("cannot connect to \(endpoint.hostHeader): \(error)")
                }
            }
    }

    /// The oldest waiting call gets the error: each waiting call costs at most one failed attempt to
    /// connect (no retry loop against a dead host), and the others still have theirs under way.
    private func connectFailed(_ description: String) {
        open -= 1
        waiting.popFirst()?.finish(.failure(HTTPCallError(code: .connectFailed, description: description)))
        connectIfNeeded()
    }

    /// The connections open now (for the test that checks closed ones are released).
    func openConnections() -> EventLoopFuture<[Connection]> {
        eventLoop.submit { Array(self.connections.values) }
    }

    /// A connection is free: the oldest waiting call gets it, or it waits for one.
    fileprivate func becameIdle(_ connection: Connection) {
        if let call = waiting.popFirst() {
            send(call, on: connection)
            return
        }
        connection.idleSince = .now()
        idle.append(connection)
    }

    fileprivate func closed(_ connection: Connection) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection.channel)) != nil else { return }
        open -= 1
        idle.removeAll { $0 === connection }
        // Calls still waiting may have counted on this one.
        connectIfNeeded()
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
                    fail(HTTPCallError(code: .badAnswer, description:
                        "answer body larger than \(GenAuthConnectionPool.maximumBodyBytes / 1024) KiB"), context: context)
                    return
                }
                body.writeBuffer(&chunk)
            case .end:
                guard let call, let head else {
                    // An answer nobody asked for: this connection's requests and answers are out of step.
                    fail(HTTPCallError(code: .badAnswer, description: "an answer arrived with no request waiting"),
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
                failure = HTTPCallError(code: .badAnswer, description: "GenAuth's answer is not HTTP/1.1 this client can read: \(error)")
            default:
                failure = HTTPCallError(code: .connectionLost, description: "\(error)")
            }
            fail(failure, context: context)
        }

        func channelInactive(context: ChannelHandlerContext) {
            call?.finish(.failure(HTTPCallError(code: .connectionLost,
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
