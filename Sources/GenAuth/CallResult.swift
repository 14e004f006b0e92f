/// What one API call produced, before classification.
package enum CallResult: Sendable, Equatable {
    /// An HTTP answer. `body` is nil when it was not GenAuth's JSON shape; `retryAfter` is the
    /// parsed `Retry-After` header.
    case answered(httpStatus: Int, body: GenAuthResponseBody?, retryAfter: Duration?)
    /// The request never left this host (connection refused, TLS failure, no connection within the
    /// timeout, no management token): GenAuth cannot have acted on it, whatever the delivery policy.
    case notSent(String)
    /// The request was written but no answer was read (timed out, connection lost, an unreadable
    /// answer): GenAuth may have accepted it, as with a crash during the call.
    case unanswered(String)
}

extension CallResult {
    /// What this result is, decided once: the verdict, the breaker's fault and the metric label all
    /// derive from it, so they cannot disagree.
    package var answerClass: AnswerClass {
        switch self {
        case .notSent: return .notSent
        case .unanswered: return .unanswered
        case .answered(let http, let body, _):
            // GenAuth answers HTTP 200 for most errors: its body decides whenever there is one, except
            // that its QPS limit is HTTP 429 whatever the body. "Sent too frequently" (body 429) is the
            // phone-window answer only on an HTTP 2xx.
            if http == 429 { return .qpsLimited }
            if body?.statusCode == 429 { return (200..<300).contains(http) ? .phoneWindowHeld : .qpsLimited }
            guard let code = body?.statusCode else {
                // No GenAuth body: a gateway's or server's answer, which proves nothing was sent. 5xx: a
                // failure; 408 is a timeout by another name; any other 4xx means the request itself is
                // wrong (path, method, headers), which a retry will not change. A 2xx/3xx without
                // GenAuth's JSON: nobody can say whether it went out.
                if http >= 500 { return .serverError }
                return (400..<500).contains(http) && http != 408 ? .requestRefused : .unrecognised
            }
            switch code {
            case 200: return (200..<300).contains(http) ? .accepted : .unrecognised
            case 400..<500: return .callerFault
            case 600..<700: return .providerFault
            case 500...: return .genauthFault
            default: return .unrecognised
            }
        }
    }
}
