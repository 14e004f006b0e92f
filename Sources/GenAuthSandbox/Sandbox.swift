import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Switches for latency and faults; settable by flag at start and by `POST /__sandbox/faults` later.
package struct SandboxFaults: Sendable, Codable, Equatable {
    /// Added to every send-sms answer.
    package var latencyMs: Int = 0
    /// Share of send-sms calls answered HTTP 503 with no GenAuth body.
    package var rate503: Double = 0
    /// Share answered real HTTP 429 with `Retry-After`.
    package var rate429: Double = 0
    /// Share that hang for `hangSeconds` (longer than a client's timeout).
    package var rateTimeout: Double = 0
    package var hangSeconds: Double = 30
    /// Seconds in `Retry-After` on 429 answers.
    package var retryAfterSeconds: Int = 1
    /// "GenAuth accepted, but answered late": this share of accepted sends is recorded (the SMS went
    /// out, the window is set) and then answered `lateAnswerMs` later, past a client's timeout.
    package var lateAnswerMs: Int = 0
    package var lateAnswerRate: Double = 1
    /// Share of send-sms calls whose connection is closed without an answer (a connection dropped on
    /// the way back). With `dropAfterAccept` the SMS is accepted and recorded first (it went out).
    package var rateDrop: Double = 0
    package var dropAfterAccept = false
    /// Share of accepted sends answered by a gateway in front of GenAuth instead: HTTP 502 or 504
    /// without GenAuth's body (the SMS went out; the answer is a proxy's).
    package var rateGatewayAfterAccept: Double = 0

    package init() {}

    /// Every field optional in JSON, so a body that sets a few switches (or an older one) decodes.
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = SandboxFaults()
        latencyMs = try container.decodeIfPresent(Int.self, forKey: .latencyMs) ?? defaults.latencyMs
        rate503 = try container.decodeIfPresent(Double.self, forKey: .rate503) ?? defaults.rate503
        rate429 = try container.decodeIfPresent(Double.self, forKey: .rate429) ?? defaults.rate429
        rateTimeout = try container.decodeIfPresent(Double.self, forKey: .rateTimeout) ?? defaults.rateTimeout
        hangSeconds = try container.decodeIfPresent(Double.self, forKey: .hangSeconds) ?? defaults.hangSeconds
        retryAfterSeconds = try container.decodeIfPresent(Int.self, forKey: .retryAfterSeconds) ?? defaults.retryAfterSeconds
        lateAnswerMs = try container.decodeIfPresent(Int.self, forKey: .lateAnswerMs) ?? defaults.lateAnswerMs
        lateAnswerRate = try container.decodeIfPresent(Double.self, forKey: .lateAnswerRate) ?? defaults.lateAnswerRate
        rateDrop = try container.decodeIfPresent(Double.self, forKey: .rateDrop) ?? defaults.rateDrop
        dropAfterAccept = try container.decodeIfPresent(Bool.self, forKey: .dropAfterAccept) ?? defaults.dropAfterAccept
        rateGatewayAfterAccept =
            try container.decodeIfPresent(Double.self, forKey: .rateGatewayAfterAccept)
            ?? defaults.rateGatewayAfterAccept
    }
}

package struct SandboxOptions: Sendable {
    package var host = "127.0.0.1"
    package var port = 0
    /// One SMS per phone per channel per this many seconds (GenAuth: a minute).
    package var windowSeconds: Double = 60
    /// Requests per second before real HTTP 429 (GenAuth's free tier: 300); 0 means no limit.
    package var qps = 0
    /// When set, the app id header must carry exactly this.
    package var appID: String? = nil
    /// Whether international numbers (country code other than +86) are accepted.
    package var international = false
    /// Management-token mode: get-management-token checks these, send-sms then needs the bearer token.
    package var accessKeyID: String? = nil
    package var accessKeySecret: String? = nil
    /// Lifetime of issued tokens, seconds, as sent in `expires_in` (any number, e.g. 1e300 or -5, to test
    /// clients; the sandbox itself honours at most a day).
    package var tokenTTL: Double = 7200
    package var faults = SandboxFaults()

    package init() {}
}

/// One accepted SMS, as the sandbox recorded it.
package struct SandboxSend: Sendable, Codable, Equatable {
    package let requestId: String
    package let channel: String
    package let phoneNumber: String
    package let phoneCountryCode: String?
    package let at: Double
}

package struct SandboxReport: Sendable, Codable {
    package let requests: Int
    package let accepted: [SandboxSend]
    /// Answers by outcome, e.g. "200", "body-400", "http-503".
    package let answers: [String: Int]
    /// send-sms requests received per wall-clock second (epoch second as text).
    package let perSecond: [String: Int]
    /// Management tokens issued.
    package let tokensIssued: Int
}

/// A faithful fake of GenAuth's send-SMS API (and the management-token call), for tests, the demo
/// and benchmarks. Same shapes and rules as GenAuth: HTTP 200 with a `statusCode` body for most
/// errors, channel validation, one SMS per phone per channel per window, a `requestId` on every
/// answer, real HTTP 429 past the QPS limit. Magic phone numbers (see the README) give fixed faults.
package final class GenAuthSandbox: Sendable {
    package static let channels: Set<String> = [
        "CHANNEL_LOGIN", "CHANNEL_REGISTER", "CHANNEL_RESET_PASSWORD", "CHANNEL_BIND_PHONE",
        "CHANNEL_UNBIND_PHONE", "CHANNEL_BIND_MFA", "CHANNEL_VERIFY_MFA", "CHANNEL_UNBIND_MFA",
        "CHANNEL_COMPLETE_PHONE", "CHANNEL_IDENTITY_VERIFICATION", "CHANNEL_DELETE_ACCOUNT",
    ]

    private struct State {
        var faults: SandboxFaults
        var lastSent: [String: Double] = [:]
        var callsPerPhone: [String: Int] = [:]
        var accepted: [SandboxSend] = []
        var requests = 0
        var answers: [String: Int] = [:]
        var qpsSecond: Int = 0
        var qpsCount = 0
        var tokens: [String: Double] = [:]
        var perSecond: [String: Int] = [:]
        var tokensIssued = 0
    }

    private let options: SandboxOptions
    private let state: Mutex<State>
    private let logger: Logger

    package init(options: SandboxOptions, logger: Logger) {
        self.options = options
        self.state = Mutex(State(faults: options.faults))
        self.logger = logger
    }

    /// Serves until cancelled or a graceful shutdown; `onListening` gets the bound port.
    package func run(onListening: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router()
        router.post("/api/v3/send-sms") { request, _ in try await self.sendSMS(request) }
        router.post("/api/v3/get-management-token") { request, _ in try await self.managementToken(request) }
        router.get("/__sandbox/sends") { _, _ in try self.json(self.report()) }
        router.post("/__sandbox/reset") { _, _ in
            self.state.withLock { $0 = State(faults: self.options.faults) }
            return Response(status: .noContent)
        }
        router.post("/__sandbox/faults") { request, _ in
            let body = try await request.body.collect(upTo: 64 * 1024)
            let faults = try JSONDecoder().decode(SandboxFaults.self, from: Data(body.readableBytesView))
            self.state.withLock { $0.faults = faults }
            return try self.json(faults)
        }
        router.post("/__sandbox/revoke-tokens") { _, _ in
            self.state.withLock { $0.tokens = [:] }
            return Response(status: .noContent)
        }
        router.get("/") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "genauth-sandbox\n"))) }
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "genauth-sandbox"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            // One loop of its own: with the shared two, its threads spent their time waking each other.
            eventLoopGroupProvider: .shared(eventLoops),
            logger: logger)
        do {
            try await app.runService()
        } catch {
            try? await eventLoops.shutdownGracefully()
            throw error
        }
        try? await eventLoops.shutdownGracefully()
    }

    package func report() -> SandboxReport {
        state.withLock {
            SandboxReport(
                requests: $0.requests, accepted: $0.accepted, answers: $0.answers, perSecond: $0.perSecond,
                tokensIssued: $0.tokensIssued)
        }
    }

    // MARK: - send-sms

    private struct SendBody: Decodable {
        var channel: String?
        var phoneNumber: String?
        var phoneCountryCode: String?
    }

    private func sendSMS(_ request: Request) async throws -> Response {
        let requestId = Self.newRequestID()
        let now = Date().timeIntervalSince1970
        let faults = state.withLock { state -> SandboxFaults in
            state.requests += 1
            state.perSecond[String(Int(now)), default: 0] += 1
            return state.faults
        }
        // The QPS limit is checked before anything else, as a gateway would.
        if options.qps > 0 {
            let second = Int(now)
            let over = state.withLock { state -> Bool in
                if state.qpsSecond != second {
                    state.qpsSecond = second
                    state.qpsCount = 0
                }
                state.qpsCount += 1
                return state.qpsCount > options.qps
            }
            // GenAuth's QPS limit is a real HTTP 429 that carries its JSON body (statusCode 429) too.
            if over { return qpsLimited(requestId: requestId) }
        }
        if faults.latencyMs > 0 { try await Task.sleep(for: .milliseconds(faults.latencyMs)) }
        let roll = Double.random(in: 0..<1)
        if roll < faults.rate503 { return httpError(503, "Service Unavailable", retryAfter: nil, requestId: requestId) }
        if roll < faults.rate503 + faults.rate429 {
            return httpError(429, "Too Many Requests", retryAfter: faults.retryAfterSeconds, requestId: requestId)
        }
        if roll < faults.rate503 + faults.rate429 + faults.rateTimeout {
            try await Task.sleep(for: .milliseconds(Int64(faults.hangSeconds * 1000)))
            return httpError(504, "Gateway Timeout", retryAfter: nil, requestId: requestId)
        }
        let dropped = Double.random(in: 0..<1) < faults.rateDrop
        if dropped && !faults.dropAfterAccept { return droppedConnection() }

        let appID = request.headers[HTTPField.Name("x-genauth-app-id")!] ?? request.headers[HTTPField.Name("x-authing-app-id")!]
        guard let appID, !appID.isEmpty else {
            return body(401, apiCode: 1401, "appId is missing: send the x-genauth-app-id header", requestId)
        }
        if let required = options.appID, required != appID {
            return body(400, apiCode: 1404, "app not found: \(appID)", requestId)
        }
        if options.accessKeyID != nil {
            let bearer = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
            let valid = state.withLock { state in bearer.flatMap { state.tokens[$0] }.map { $0 > now } ?? false }
            guard valid else { return body(401, apiCode: 1401, "invalid or expired management token", requestId) }
        }
        let raw = try await request.body.collect(upTo: 64 * 1024)
        guard let sent = try? JSONDecoder().decode(SendBody.self, from: Data(raw.readableBytesView)) else {
            return body(400, apiCode: 1400, "request body must be JSON", requestId)
        }
        guard let channel = sent.channel, Self.channels.contains(channel) else {
            return body(400, apiCode: 1400, "channel must be one of \(Self.channels.sorted().joined(separator: ", "))", requestId)
        }
        guard let phone = sent.phoneNumber, !phone.isEmpty, phone.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return body(400, apiCode: 1400, "phoneNumber must be digits without country code", requestId)
        }
        let countryCode = sent.phoneCountryCode ?? "+86"
        if countryCode != "+86" {
            guard options.international else {
                return body(400, apiCode: 2006, "international SMS is not configured for this tenant", requestId)
            }
        } else if phone.count != 11 || !phone.hasPrefix("1") {
            return body(400, apiCode: 1400, "phoneNumber is not a valid mainland China mobile number", requestId)
        }

        let key = "\(countryCode)|\(phone)|\(channel)"
        let callNumber = state.withLock { state -> Int in
            state.callsPerPhone[key, default: 0] += 1
            return state.callsPerPhone[key]!
        }
        if let scripted = try await scriptedFault(
            phone: phone, countryCode: countryCode, call: callNumber,
            requestId: requestId, faults: faults)
        {
            return scripted
        }

        let verdict = state.withLock { state -> Double? in
            if let last = state.lastSent[key], now - last < options.windowSeconds {
                return options.windowSeconds - (now - last)
            }
            state.lastSent[key] = now
            state.accepted.append(
                SandboxSend(
                    requestId: requestId, channel: channel, phoneNumber: phone,
                    phoneCountryCode: sent.phoneCountryCode, at: now))
            return nil
        }
        if let wait = verdict {
            return body(
                429, apiCode: 2021,
                "SMS sent too frequently: one per phone per channel per \(Int(options.windowSeconds)) s; retry in \(Int(wait.rounded(.up))) s",
                requestId)
        }
        if dropped { return droppedConnection() }
        if faults.lateAnswerMs > 0, Double.random(in: 0..<1) < faults.lateAnswerRate {
            try await Task.sleep(for: .milliseconds(faults.lateAnswerMs))
        }
        if Double.random(in: 0..<1) < faults.rateGatewayAfterAccept {
            return httpError(Bool.random() ? 502 : 504, "Bad Gateway", retryAfter: nil, requestId: requestId)
        }
        if let script = scripted(phone: phone, countryCode: countryCode), script.kind == 6,
            script.failures == 0 || callNumber <= script.failures
        {
            // Accepted (recorded above, window set), with values no 32-bit or short column holds.
            return oddBody(statusCode: 200, apiCode: 99_999_999_999, message: "", requestId: String(repeating: "r", count: 300))
        }
        return body(200, apiCode: nil, "", requestId)
    }

    /// Kind K and count N of a scripted number 17K000N####, if it is one.
    private func scripted(phone: String, countryCode: String) -> (kind: Int, failures: Int)? {
        let digits = Array(phone)
        guard countryCode == "+86", digits.count == 11, digits[0] == "1", digits[1] == "7",
            String(digits[3...5]) == "000", let kind = digits[2].wholeNumberValue,
            let failures = digits[6].wholeNumberValue
        else { return nil }
        return (kind, failures)
    }

    /// Numbers 17K000N####: kind K acts on the first N calls (N = 0: every call; kind 0 always).
    /// K: 0 permanent body 400, 1 body 500, 2 HTTP 503, 3 HTTP 429 with Retry-After, 4 hang past the
    /// client's timeout, 5 body 601, 7 a body statusCode of 99999999999 (not accepted, nothing sent).
    /// Kind 6 is no fault here: the SMS is accepted and recorded like any success (window set), and
    /// `sendSMS` answers it with an apiCode (99999999999) and a 300-character requestId that no 32-bit
    /// or short column holds. Every answer is counted in `answers` ("200", "body-…", "http-…").
    private func scriptedFault(
        phone: String, countryCode: String, call: Int, requestId: String,
        faults: SandboxFaults
    ) async throws -> Response? {
        guard let script = scripted(phone: phone, countryCode: countryCode) else { return nil }
        let (kind, failures) = (script.kind, script.failures)
        if kind != 0 && failures > 0 && call > failures { return nil }
        switch kind {
        case 0: return body(400, apiCode: 2010, "phone number is on the SMS blocklist", requestId)
        case 1: return body(500, apiCode: 5000, "internal server error", requestId)
        case 2: return httpError(503, "Service Unavailable", retryAfter: nil, requestId: requestId)
        case 3: return httpError(429, "Too Many Requests", retryAfter: faults.retryAfterSeconds, requestId: requestId)
        case 4:
            try await Task.sleep(for: .milliseconds(Int64(faults.hangSeconds * 1000)))
            return httpError(504, "Gateway Timeout", retryAfter: nil, requestId: requestId)
        case 5: return body(601, apiCode: 6001, "SMS provider error: upstream gateway refused", requestId)
        case 7: return oddBody(statusCode: 99_999_999_999, apiCode: nil, message: "odd server code", requestId: requestId)
        default: return nil
        }
    }

    // MARK: - management token

    private struct TokenBody: Decodable {
        var accessKeyId: String?
        var accessKeySecret: String?
    }

    private func managementToken(_ request: Request) async throws -> Response {
        let requestId = UUID().uuidString.lowercased()
        let raw = try await request.body.collect(upTo: 64 * 1024)
        guard let body = try? JSONDecoder().decode(TokenBody.self, from: Data(raw.readableBytesView)),
            let id = body.accessKeyId, !id.isEmpty, let secret = body.accessKeySecret, !secret.isEmpty
        else {
            return self.body(400, apiCode: 1400, "accessKeyId and accessKeySecret are required", requestId)
        }
        if let expectedID = options.accessKeyID, expectedID != id || options.accessKeySecret != secret {
            return self.body(401, apiCode: 1401, "accessKeyId or accessKeySecret is wrong", requestId)
        }
        let token = "sandbox-" + UUID().uuidString.lowercased()
        // JSON has no NaN or infinity (JSONSerialization would throw): the largest finite number stands in.
        let ttl =
            options.tokenTTL.isNaN
            ? 0 : min(max(options.tokenTTL, -Double.greatestFiniteMagnitude), Double.greatestFiniteMagnitude)
        state.withLock {
            // Kept for at most a day here, whatever expires_in says.
            $0.tokens[token] = Date().timeIntervalSince1970 + min(max(ttl, 0), 86_400)
            $0.tokensIssued += 1
        }
        let object: [String: Any] = [
            "statusCode": 200, "message": "", "requestId": requestId,
            "data": ["access_token": token, "expires_in": ttl] as [String: Any],
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Answers

    /// GenAuth's answer body; `apiCode` is left out when nil, as GenAuth does.
    private struct Answer: Encodable {
        let apiCode: Int?
        let message: String
        let requestId: String
        let statusCode: Int
    }

    // Shared (thread-safe) and Codable rather than JSONSerialization: the sandbox stands in for a
    // remote service, so in benchmarks every microsecond it spends is taken from the daemon
    // (JSONSerialization and UUID strings were a third of its CPU).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    /// 32 lowercase hex digits, like GenAuth's request ids.
    static func newRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        func hex(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        return hex(generator.next()) + hex(generator.next())
    }

    private func body(_ statusCode: Int, apiCode: Int?, _ message: String, _ requestId: String) -> Response {
        state.withLock { $0.answers[statusCode == 200 ? "200" : "body-\(statusCode)", default: 0] += 1 }
        let data =
            (try? Self.encoder.encode(
                Answer(
                    apiCode: apiCode, message: message, requestId: requestId,
                    statusCode: statusCode))) ?? Data()
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An answer with numbers GenAuth's documented shape allows but a client's columns may not hold.
    private func oddBody(statusCode: Int, apiCode: Int?, message: String, requestId: String) -> Response {
        state.withLock { $0.answers[statusCode == 200 ? "200" : "body-\(statusCode)", default: 0] += 1 }
        var text = "{\"statusCode\":\(statusCode),\"message\":\"\(message)\",\"requestId\":\"\(requestId)\""
        if let apiCode { text += ",\"apiCode\":\(apiCode)" }
        text += "}"
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// GenAuth's QPS limit: HTTP 429 with `Retry-After`, and its JSON body saying 429 as well.
    private func qpsLimited(requestId: String) -> Response {
        state.withLock { $0.answers["http-429", default: 0] += 1 }
        let data =
            (try? Self.encoder.encode(
                Answer(
                    apiCode: nil, message: "Too Many Requests: QPS limit \(options.qps)",
                    requestId: requestId, statusCode: 429))) ?? Data()
        return Response(
            status: .tooManyRequests, headers: [.contentType: "application/json", .retryAfter: "1"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The connection closes with no answer: a head promising a body, then a body that fails, which
    /// makes the server drop the connection mid-answer.
    private func droppedConnection() -> Response {
        state.withLock { $0.answers["dropped", default: 0] += 1 }
        return Response(
            status: .ok, headers: [.contentType: "application/json", .contentLength: "100"],
            body: ResponseBody { _ in throw DroppedConnection() })
    }

    private struct DroppedConnection: Error {}

    private func httpError(_ status: Int, _ text: String, retryAfter: Int?, requestId: String) -> Response {
        state.withLock { $0.answers["http-\(status)", default: 0] += 1 }
        var headers: HTTPFields = [.contentType: "text/plain"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        headers[HTTPField.Name("x-request-id")!] = requestId
        return Response(
            status: .init(code: status, reasonPhrase: text), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
    }

    private func json<T: Encodable>(_ value: T) throws -> Response {
        let data = try JSONEncoder().encode(value)
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
