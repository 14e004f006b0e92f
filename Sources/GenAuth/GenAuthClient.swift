import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Calls `POST {appHost}/api/v3/send-sms`. Pooled keep-alive connections (as many as calls in flight,
/// see `GenAuthConnectionPool` for why not AsyncHTTPClient), a per-call deadline, and every outcome
/// turned into a `CallResult`: this never throws, because each failure is something to write on the
/// job's row.
package final class GenAuthClient: Sendable {
    private let pool: GenAuthConnectionPool
    private let eventLoops: MultiThreadedEventLoopGroup
    private let sendHead: HTTPRequestHead
    private let timeout: TimeAmount
    private let tokens: ManagementTokenProvider?

    /// Throws when the host is not a usable URL (`Configuration.validate()` checks it first) or TLS
    /// cannot be set up.
    package init(configuration: Configuration) throws {
        let config = configuration
        // One event loop of its own for every GenAuth connection: the calls are small and many, and
        // with the connections spread over the shared group's loops the threads spent their time
        // waking each other.
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let timeout = TimeAmount(config.timeout)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "accept", value: "application/json")
        headers.add(name: config.headerFamily.appIdHeader, value: config.appID)
        headers.add(name: "user-agent", value: config.userAgent)
        do {
            let pool = try GenAuthConnectionPool(
                endpoint: GenAuthEndpoint(url: config.host), eventLoop: eventLoops.next(),
                maximumConnections: config.maximumConnections, connectTimeout: TimeAmount(config.connectTimeout))
            self.sendHead = try pool.head(.POST, path: "/api/v3/send-sms", headers: headers)
            if let key = config.accessKey {
                self.tokens = try ManagementTokenProvider(
                    pool: pool, accessKeyID: key.id, accessKeySecret: key.secret,
                    timeout: timeout)
            } else {
                self.tokens = nil
            }
            self.pool = pool
        } catch {
            // Nothing will shut the loop's thread down otherwise.
            try? eventLoops.syncShutdownGracefully()
            throw error
        }
        self.eventLoops = eventLoops
        self.timeout = timeout
    }

    package func shutdown() async {
        await pool.shutdown()
        try? await eventLoops.shutdownGracefully()
    }

    /// One send-SMS call for `start(_:)`.
    package struct PendingCall: Sendable {
        package var request: SendSMSRequest
        /// The rate limiter's slot; nil: at once.
        package var notBefore: ContinuousClock.Instant?
        /// Runs with the call's result (on the client's event loop: keep it short and non-blocking).
        package var completion: @Sendable (CallResult) -> Void

        package init(
            request: SendSMSRequest, notBefore: ContinuousClock.Instant? = nil,
            completion: @escaping @Sendable (CallResult) -> Void
        ) {
            self.request = request
            self.notBefore = notBefore
            self.completion = completion
        }
    }

    /// Starts `calls` together and returns at once; each completion gets its result. This is the
    /// dispatcher's path: no Swift task and no thread hop per call (measured: the hops cost as much
    /// CPU as the HTTP exchange itself).
    package func start(_ calls: [PendingCall]) {
        guard tokens == nil else {
            // Management-token mode needs the async token cache; it is the uncommon set-up.
            for call in calls {
                Task {
                    if let slot = call.notBefore, slot > .now { try? await Task.sleep(until: slot, clock: .continuous) }
                    call.completion(await self.send(call.request))
                }
            }
            return
        }
        let timeout = self.timeout
        pool.execute(
            calls.map { call in
                GenAuthConnectionPool.Request(
                    head: sendHead, body: call.request.jsonBody(), timeout: timeout,
                    notBefore: call.notBefore.map(Self.deadline)
                ) { answer in
                    call.completion(Self.callResult(answer, timeout: timeout))
                }
            })
    }

    /// One call, awaited (management-token mode, tests).
    package func send(_ body: SendSMSRequest) async -> CallResult {
        let payload = body.jsonBody()
        guard let tokens else { return await execute(sendHead, payload) }
        // Management-token mode: a 401 means the token went stale early; refresh once and retry.
        var head = sendHead
        for attempt in 1...2 {
            let token: String
            do {
                token = try await tokens.token()
            } catch {
                return .notSent("could not get a management token: \(error)")
            }
            head.headers.replaceOrAdd(name: "authorization", value: "Bearer \(token)")
            let result = await execute(head, payload)
            if attempt == 1, case .answered(let http, let answer, _) = result, http == 401 || answer?.statusCode == 401 {
                tokens.invalidate(token)
                continue
            }
            return result
        }
        return .notSent("unreachable")
    }

    private func execute(_ head: HTTPRequestHead, _ payload: ByteBuffer) async -> CallResult {
        do {
            let answer = try await pool.execute(head: head, body: payload, timeout: timeout).get()
            return Self.callResult(.success(answer), timeout: timeout)
        } catch let error as HTTPCallError {
            return Self.callResult(.failure(error), timeout: timeout)
        } catch {
            return .unanswered("\(error)")
        }
    }

    /// What the dispatcher records: GenAuth's JSON body (nil if it was not that shape), `Retry-After`,
    /// or why there was no answer.
    static func callResult(_ answer: Result<HTTPAnswer, HTTPCallError>, timeout: TimeAmount) -> CallResult {
        switch answer {
        case .success(let answer):
            let decoded = answer.body.withUnsafeReadableBytes(GenAuthResponseBody.decode)
            let retryAfter = answer.headers.first(name: "retry-after").flatMap(parseRetryAfter)
                .map { Duration.microseconds(Int64((min($0, 1e9) * 1_000_000).rounded())) }
            return .answered(httpStatus: answer.status, body: decoded, retryAfter: retryAfter)
        case .failure(let error) where error.code == .timedOut && error.requestWritten:
            return .unanswered("timeout: no answer from GenAuth within \(describe(timeout))")
        case .failure(let error) where error.requestWritten:
            return .unanswered("connection error after the request was sent: \(error.description)")
        case .failure(let error):
            return .notSent("not sent: \(error.description)")
        }
    }

    private static func deadline(_ instant: ContinuousClock.Instant) -> NIODeadline {
        let delay = ContinuousClock.now.duration(to: instant)
        let (seconds, attoseconds) = delay.components
        return .now() + .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// `Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3).
    static func parseRetryAfter(_ value: String) -> Double? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(trimmed), seconds.isFinite, seconds >= 0 { return seconds }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        return max(0, date.timeIntervalSinceNow)
    }

    private static func describe(_ amount: TimeAmount) -> String {
        String(format: "%.1f s", Double(amount.nanoseconds) / 1e9)
    }
}
