import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SMSConfiguration
import SMSJobStore
import SMSModel
import Synchronization
import Testing
import SMSTestSupport

@testable import GenAuth
@testable import SMSEngine

/// The hand-written HTTP/1.1 client against a scripted TCP server on 127.0.0.1 that answers each request
/// as the test says, including answers no well-behaved server gives: the cases the sandbox cannot
/// produce (split, oversized, garbled or missing answers, closes mid-answer, TLS).
@Suite("GenAuth connection pool", .serialized)
struct GenAuthConnectionPoolTests {
    static let okBody = #"{"statusCode":200,"message":"ok","requestId":"req-1"}"#

    @Test("one connection serves sequential calls; the request is GenAuth's, byte for byte")
    func keepAliveAndRequestShape() async throws {
        let server = try await ScriptedServer { _, _ in .answer(ScriptedServer.response(Self.okBody)) }
        let client = try makeClient(server.url, appID: "app-7")
        for index in 0..<20 {
            let result = await client.send(
                SendSMSRequest(
                    channel: "CHANNEL_LOGIN", phoneNumber: "1380013\(String(format: "%04d", index))",
                    phoneCountryCode: index == 0 ? "+44" : nil))
            #expect(
                result
                    == .answered(
                        httpStatus: 200, body: GenAuthResponseBody(statusCode: 200, message: "ok", requestId: "req-1"),
                        retryAfter: nil))
        }
        await client.shutdown()
        let stats = server.stats
        await server.stop()
        #expect(stats.connections == 1)
        #expect(stats.requests.count == 20)
        let first = try #require(stats.requests.first)
        let (head, body) = try #require(ScriptedServer.split(first))
        let lines = head.components(separatedBy: "\r\n")
        #expect(lines.first == "POST /api/v3/send-sms HTTP/1.1")
        #expect(lines.contains("host: 127.0.0.1:\(server.port)"))
        #expect(lines.contains("x-genauth-app-id: app-7"))
        #expect(lines.contains("content-type: application/json"))
        #expect(lines.contains("content-length: \(body.utf8.count)"))
        #expect(body == #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13800130000","phoneCountryCode":"+44"}"#)
    }

    @Test("no more connections than the concurrency; every call started together is answered")
    func connectionsBoundedByConcurrency() async throws {
        let server = try await ScriptedServer { _, _ in .after(.milliseconds(50), .answer(ScriptedServer.response(Self.okBody))) }
        let client = try makeClient(server.url, concurrency: 3)
        let results = await startAll(client, count: 12)
        await client.shutdown()
        let stats = server.stats
        await server.stop()
        #expect(results.count == 12)
        #expect(results.allSatisfy { if case .answered(200, _, _) = $0 { true } else { false } })
        #expect(stats.mostOpenAtOnce == 3)
        #expect(stats.connections == 3)
    }

    @Test("a call past its deadline times out, its connection is dropped, the next call gets a fresh one")
    func timeoutDropsTheConnection() async throws {
        let server = try await ScriptedServer { index, _ in
            index == 0 ? .silence : .answer(ScriptedServer.response(Self.okBody))
        }
        let client = try makeClient(server.url, timeout: 0.4)
        let started = ContinuousClock.now
        let first = await client.sendLogin(to: "13800138000")
        let waited = ContinuousClock.now - started
        guard case .unanswered(let reason) = first else {
            Issue.record("expected a timeout after the request was written, got \(first)")
            return
        }
        #expect(reason.contains("0.4 s"))
        #expect(waited >= .milliseconds(350) && waited < .seconds(5))
        let second = await client.sendLogin(to: "13800138001")
        #expect(second.httpStatus == 200)
        await client.shutdown()
        #expect(server.stats.connections == 2)
        await server.stop()
    }

    @Test("answers split over many reads, chunked, or with connection: close are read whole")
    func awkwardButValidAnswers() async throws {
        let body = #"{"statusCode":429,"message":"too often","apiCode":42901}"#
        let chunked =
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
            + "10\r\n" + String(body.prefix(16)) + "\r\n"
            + String(body.utf8.count - 16, radix: 16) + "\r\n" + String(body.dropFirst(16)) + "\r\n0\r\n\r\n"
        let server = try await ScriptedServer { index, _ in
            switch index {
            case 0: .pieces(Array(chunked).chunked(7).map { String($0) }, gap: .milliseconds(5))
            case 1: .answerAndClose(ScriptedServer.response(body, headers: "connection: close\r\nretry-after: 3\r\n"))
            default: .answer(ScriptedServer.response(Self.okBody))
            }
        }
        let client = try makeClient(server.url)
        let expected = GenAuthResponseBody(statusCode: 429, message: "too often", apiCode: 42901)
        let first = await client.sendLogin(to: "13800138000")
        #expect(first == .answered(httpStatus: 200, body: expected, retryAfter: nil))
        let second = await client.sendLogin(to: "13800138001")
        #expect(second == .answered(httpStatus: 200, body: expected, retryAfter: .seconds(3)))
        let third = await client.sendLogin(to: "13800138002")
        #expect(third.httpStatus == 200)
        await client.shutdown()
        #expect(server.stats.connections == 2)
        await server.stop()
    }

    @Test("closed connections are released, not kept alive by their handlers")
    func closedConnectionsAreReleased() async throws {
        // Even requests get a keep-alive answer, odd ones `connection: close`: each connection serves two.
        let server = try await ScriptedServer { index, _ in
            index % 2 == 0
                ? .answer(ScriptedServer.response(Self.okBody))
                : .answerAndClose(ScriptedServer.response(Self.okBody, headers: "connection: close\r\n"))
        }
        let pool = try GenAuthConnectionPool(
            endpoint: .init(url: server.url), eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            maximumConnections: 1, connectTimeout: .seconds(5))
        final class WeakConnection: @unchecked Sendable {
            weak var connection: GenAuthConnectionPool.Connection?
        }
        var watched: [WeakConnection] = []
        let head = try pool.head(.POST, path: "/api/v3/send-sms")
        for _ in 0..<5 {
            #expect(try await pool.execute(head: head, body: ByteBuffer(string: "{}"), timeout: .seconds(5)).get().status == 200)
            // The connection is idle in the pool now: watch it (weakly) while the next answer closes it.
            for connection in try await pool.openConnections().get() {
                let weak = WeakConnection()
                weak.connection = connection
                watched.append(weak)
            }
            #expect(try await pool.execute(head: head, body: ByteBuffer(string: "{}"), timeout: .seconds(5)).get().status == 200)
        }
        #expect(watched.count == 5)
        #expect(
            await eventually(timeout: .seconds(5)) {
                (try? await pool.openConnections().get().isEmpty) == true && watched.allSatisfy { $0.connection == nil }
            })
        await pool.shutdown()
        #expect(server.stats.connections == 5)
        await server.stop()
    }

    @Test("garbled, oversized and cut-off answers are connection errors that say what happened; the pool recovers")
    func brokenAnswers() async throws {
        let huge = #"{"statusCode":200,"message":""# + String(repeating: "x", count: 70 * 1024) + #""}"#
        let server = try await ScriptedServer { index, _ in
            switch index {
            case 0: .answer("HELLO THERE\r\n\r\n")
            case 1: .answer(ScriptedServer.response(huge))
            case 2: .answerAndClose(String(ScriptedServer.response(Self.okBody).dropLast(10)))
            case 3: .close
            default: .answer(ScriptedServer.response(Self.okBody))
            }
        }
        let client = try makeClient(server.url)
        var messages: [String] = []
        for index in 0..<4 {
            let result = await client.sendLogin(to: "1380013800\(index)")
            // Each request was written: GenAuth may have acted on it.
            guard case .unanswered(let message) = result else {
                Issue.record("call \(index): expected a connection error after the request was written, got \(result)")
                continue
            }
            messages.append(message)
        }
        #expect(messages.count == 4)
        #expect(messages.dropFirst().first?.contains("larger than 64 KiB") == true)
        #expect(messages.dropFirst(2).allSatisfy { $0.contains("closed before the answer was complete") })
        let after = await client.sendLogin(to: "13800138009")
        #expect(after.httpStatus == 200)
        await client.shutdown()
        #expect(server.stats.connections == 5)
        await server.stop()
    }

    @Test("bytes after an answer drop the connection; a call waiting for it is not given them as its answer")
    func unsolicitedBytes() async throws {
        let server = try await ScriptedServer { index, _ in
            index == 0
                ? .answer(
                    ScriptedServer.response(Self.okBody) + ScriptedServer.response(#"{"statusCode":500,"message":"stray"}"#))
                : .answer(ScriptedServer.response(#"{"statusCode":200,"message":"second"}"#))
        }
        // One connection, two calls: the second waits for the first's connection, which frees up in
        // the very read that also brings the stray answer.
        let client = try makeClient(server.url, concurrency: 1)
        let results = await startAll(client, count: 2)
        await client.shutdown()
        let messages = results.compactMap { result -> String? in
            if case .answered(200, let body?, _) = result { return body.message }
            return nil
        }
        #expect(messages.sorted() == ["ok", "second"], "\(results)")
        #expect(server.stats.connections == 2)
        await server.stop()
    }

    @Test("nothing listening: a connection error naming the host, at once")
    func connectionRefused() async throws {
        let port = try await ScriptedServer.unusedPort()
        let client = try makeClient("http://127.0.0.1:\(port)")
        let started = ContinuousClock.now
        let results = await startAll(client, count: 5)
        await client.shutdown()
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(results.count == 5)
        for result in results {
            guard case .notSent(let message) = result else {
                Issue.record("expected a connection error before anything was sent, got \(result)")
                continue
            }
            #expect(message.contains("cannot connect to 127.0.0.1:\(port)"))
        }
    }

    @Test("https: verified against the trusted certificate by name and by address; an untrusted one is refused")
    func tls() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let openssl = try ChildProcess(
            "/usr/bin/env",
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ])
        #expect(await openssl.waitForExit(timeout: .seconds(30)) == 0, "openssl: \(openssl.output)")
        let serverTLS = try NIOSSLContext(
            configuration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))))
        let server = try await ScriptedServer(tls: serverTLS) { _, _ in .answer(ScriptedServer.response(Self.okBody)) }
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificate))
        for host in ["localhost", "127.0.0.1"] {
            let pool = try GenAuthConnectionPool(
                endpoint: .init(url: "https://\(host):\(server.port)"), eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
                maximumConnections: 2, connectTimeout: .seconds(5), tls: trusting)
            let answer = try await pool.execute(
                head: try pool.head(.POST, path: "/api/v3/send-sms"),
                body: ByteBuffer(string: "{}"), timeout: .seconds(5)
            ).get()
            #expect(answer.status == 200, "via \(host)")
            #expect(String(buffer: answer.body) == Self.okBody)
            await pool.shutdown()
        }
        // The default: the system's trust roots, which do not know this certificate.
        let client = try makeClient("https://localhost:\(server.port)")
        let refused = await client.sendLogin(to: "13800138000")
        await client.shutdown()
        // The handshake failed before the request could leave: certainly not sent.
        guard case .notSent(let message) = refused else {
            Issue.record("expected the handshake to fail, got \(refused)")
            await server.stop()
            return
        }
        #expect(message.lowercased().contains("certificate"), "\(message)")
        #expect(server.stats.requests.count == 2)
        await server.stop()
    }

    // MARK: - Helpers

    func makeClient(_ url: String, appID: String = "app", concurrency: Int = 4, timeout: Double = 5) throws -> GenAuthClient {
        try GenAuthClient(
            configuration: .init(
                host: url, appID: appID, timeout: .seconds(double: timeout),
                maximumConnections: concurrency))
    }

    /// `count` calls started together on the dispatcher's path (`start`), their results once all are in.
    func startAll(_ client: GenAuthClient, count: Int) async -> [CallResult] {
        let results = Mutex<[CallResult]>([])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            client.start(
                (0..<count).map { index in
                    GenAuthClient.PendingCall(
                        request: SendSMSRequest(
                            channel: "CHANNEL_LOGIN", phoneNumber: "1390000\(String(format: "%04d", index))",
                            phoneCountryCode: nil)
                    ) { result in
                        let all = results.withLock {
                            $0.append(result)
                            return $0.count
                        }
                        if all == count { done.resume() }
                    }
                })
        }
        return results.withLock { $0 }
    }
}

extension GenAuthClient {
    /// One CHANNEL_LOGIN call to a mainland number, awaited.
    func sendLogin(to phone: String) async -> CallResult {
        await send(SendSMSRequest(channel: "CHANNEL_LOGIN", phoneNumber: phone, phoneCountryCode: nil))
    }
}

extension CallResult {
    var httpStatus: Int? {
        if case .answered(let status, _, _) = self { return status }
        return nil
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

/// A TCP server on 127.0.0.1 that reads HTTP/1.1 requests (head and content-length body) and answers
/// each the way `script(requestIndex, request)` says. Counts connections.
final class ScriptedServer: Sendable {
    indirect enum Reply: Sendable {
        /// Write these bytes.
        case answer(String)
        /// Write these bytes, then close.
        case answerAndClose(String)
        /// Write the pieces one by one, `gap` apart.
        case pieces([String], gap: TimeAmount)
        /// Never answer.
        case silence
        /// Close without answering.
        case close
        /// Wait, then reply.
        case after(TimeAmount, Reply)
    }

    struct Stats: Sendable {
        var connections = 0
        var openNow = 0
        var mostOpenAtOnce = 0
        var requests: [String] = []
    }

    let port: Int
    var url: String { "http://127.0.0.1:\(port)" }
    var stats: Stats { state.value.withLock { $0 } }
    private final class Shared: Sendable {
        let value = Mutex(Stats())
    }
    private let state = Shared()
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: any NIOCore.Channel

    init(tls: NIOSSLContext? = nil, script: @escaping @Sendable (Int, String) -> Reply) async throws {
        let state = self.state
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(RequestReader(state: state, script: script))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }

    /// A port nothing listens on (bound, then released).
    static func unusedPort() async throws -> Int {
        let server = try await ScriptedServer { _, _ in .close }
        let port = server.port
        await server.stop()
        return port
    }

    static func response(_ body: String, status: String = "200 OK", headers: String = "") -> String {
        "HTTP/1.1 \(status)\r\ncontent-type: application/json\r\n\(headers)content-length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// A request's head and body.
    static func split(_ request: String) -> (head: String, body: String)? {
        guard let range = request.range(of: "\r\n\r\n") else { return nil }
        return (String(request[..<range.lowerBound]), String(request[range.upperBound...]))
    }

    private final class RequestReader: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let state: Shared
        let script: @Sendable (Int, String) -> Reply
        var pending = ByteBuffer()

        init(state: Shared, script: @escaping @Sendable (Int, String) -> Reply) {
            self.state = state
            self.script = script
        }

        func channelActive(context: ChannelHandlerContext) {
            state.value.withLock {
                $0.connections += 1
                $0.openNow += 1
                $0.mostOpenAtOnce = max($0.mostOpenAtOnce, $0.openNow)
            }
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.value.withLock { $0.openNow -= 1 }
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            pending.writeBuffer(&bytes)
            while let request = takeRequest() {
                let index = state.value.withLock {
                    $0.requests.append(request)
                    return $0.requests.count - 1
                }
                perform(script(index, request), context: context)
            }
        }

        private func takeRequest() -> String? {
            let text = String(buffer: pending)
            guard let (head, _) = ScriptedServer.split(text) else { return nil }
            let length =
                head.components(separatedBy: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            let total = head.utf8.count + 4 + length
            guard pending.readableBytes >= total, let request = pending.readString(length: total) else { return nil }
            pending.discardReadBytes()
            return request
        }

        private func perform(_ reply: Reply, context: ChannelHandlerContext) {
            let loop = context.eventLoop.assumeIsolated()
            switch reply {
            case .answer(let text):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
            case .answerAndClose(let text):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            case .pieces(let pieces, let gap):
                for (index, piece) in pieces.enumerated() {
                    loop.scheduleTask(in: gap * Int64(index)) {
                        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: piece)), promise: nil)
                    }
                }
            case .silence:
                break
            case .close:
                context.close(promise: nil)
            case .after(let delay, let then):
                loop.scheduleTask(in: delay) { self.perform(then, context: context) }
            }
        }

        typealias OutboundOut = ByteBuffer
    }
}
