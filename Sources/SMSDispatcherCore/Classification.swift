/// GenAuth's answer body: `{statusCode, message, apiCode?, requestId?}`.
public struct GenAuthResponseBody: Sendable, Codable, Equatable {
    public var statusCode: Int
    public var message: String?
    public var apiCode: Int?
    public var requestId: String?

    public init(statusCode: Int, message: String? = nil, apiCode: Int? = nil, requestId: String? = nil) {
        self.statusCode = statusCode
        self.message = message
        self.apiCode = apiCode
        self.requestId = requestId
    }
}

/// What one API call produced, before classification.
public enum CallResult: Sendable, Equatable {
    /// An HTTP answer. `body` is nil when it was not GenAuth's JSON shape; `retryAfter` is the
    /// parsed `Retry-After` header in seconds.
    case answered(httpStatus: Int, body: GenAuthResponseBody?, retryAfter: Double?)
    /// The request never left this host (connection refused, TLS failure, no connection within the
    /// timeout, no management token): GenAuth cannot have acted on it, whatever the delivery policy.
    case notSent(String)
    /// The request was written but no answer was read (timed out, connection lost, an unreadable
    /// answer): GenAuth may have accepted it, as with a crash during the call.
    case unanswered(String)

    /// GenAuth itself failing (what the circuit breaker counts): no answer, or a 5xx/60x one. Rate
    /// limits (429) and the caller's faults are GenAuth working.
    public var isServerFault: Bool {
        switch self {
        case .notSent, .unanswered: return true
        case .answered(let http, let body, _):
            if http == 429 || body?.statusCode == 429 { return false }
            if http >= 500 { return true }
            if let code = body?.statusCode { return code >= 500 }
            return false
        }
    }
}

/// What the daemon does with a job after one call.
public enum Verdict: Sendable, Equatable {
    /// statusCode 200: the SMS went out.
    case sent
    /// The caller's fault (4xx other than 429): sending again cannot help.
    case permanentFailure
    /// The server's or the network's fault, or a rate limit: try again later if attempts remain.
    /// `retryAfter` is the server's own hint, in seconds.
    case transientFailure(retryAfter: Double?)
}

public enum Classification {
    /// Body statusCode 200 → sent; body 4xx (except 429) → permanent; HTTP 5xx, body 5xx/60x, HTTP or body
    /// 429, timeouts and connection errors → transient. GenAuth answers HTTP 200 for most errors, so the
    /// body decides whenever there is one.
    public static func classify(_ result: CallResult) -> Verdict {
        switch result {
        case .notSent, .unanswered:
            return .transientFailure(retryAfter: nil)
        case .answered(let httpStatus, let body, let retryAfter):
            if httpStatus == 429 || body?.statusCode == 429 {
                return .transientFailure(retryAfter: retryAfter)
            }
            if httpStatus >= 500 {
                return .transientFailure(retryAfter: retryAfter)
            }
            if let body {
                switch body.statusCode {
                case 200: return (200..<300).contains(httpStatus) ? .sent : .transientFailure(retryAfter: retryAfter)
                case 400..<500: return .permanentFailure
                default:
                    // 5xx, 60x (third-party SMS provider faults) and anything unknown: the SMS was not
                    // accepted, and nothing says trying again is useless.
                    return .transientFailure(retryAfter: retryAfter)
                }
            }
            // No GenAuth body. 408 is a timeout by another name; any other 4xx means the request
            // itself is wrong (path, method, headers), which a retry will not change.
            if httpStatus == 408 { return .transientFailure(retryAfter: retryAfter) }
            if (400..<500).contains(httpStatus) { return .permanentFailure }
            // A 2xx/3xx without GenAuth's JSON: we cannot know whether it went out; retry.
            return .transientFailure(retryAfter: retryAfter)
        }
    }
}

/// Exponential backoff with jitter for retries: attempt n waits about base·2^(n-1), capped, and
/// "equal jitter" keeps half of it fixed so a retry never comes back almost at once, while the other
/// half spreads a burst of failures out. A `Retry-After` from the server wins when it is longer, even
/// past `maximum` (the server knows when it will take calls again), up to an hour.
public struct Backoff: Sendable, Equatable {
    public var base: Double
    public var maximum: Double
    /// A larger `Retry-After` is taken as a server bug, not an instruction.
    static let longestRetryAfter = 3600.0

    public init(base: Double = 2, maximum: Double = 300) {
        self.base = base
        self.maximum = maximum
    }

    /// Seconds to wait after the `attempt`-th call (1-based) failed.
    public func delay(afterAttempt attempt: Int, retryAfter: Double? = nil,
                      random: Double = Double.random(in: 0...1)) -> Double {
        let exponent = Double(max(0, min(attempt - 1, 30)))
        let ceiling = min(maximum, base * pow2(exponent))
        let jittered = ceiling / 2 + ceiling / 2 * random
        if let retryAfter, retryAfter > jittered { return min(retryAfter, max(maximum, Self.longestRetryAfter)) }
        return jittered
    }

    private func pow2(_ exponent: Double) -> Double {
        var value = 1.0
        for _ in 0..<Int(exponent) { value *= 2 }
        return value
    }
}
