/// One call's result, classified once (`CallResult.answerClass`). What the daemon does with the job
/// (`verdict`), whether the circuit breaker counts it as GenAuth failing (`isServerFault`) and the
/// `smsd_api_calls_total` label (`metricLabel`) are all read off this value.
package enum AnswerClass: Sendable, Hashable, CaseIterable {
    /// Body statusCode 200 on a 2xx: the SMS went out.
    case accepted
    /// Body 4xx other than 429: the caller's fault (bad number, channel, app); sending again cannot help.
    case callerFault
    /// HTTP 4xx without GenAuth's body (other than 408 and 429): the request itself is wrong (a proxy's
    /// answer, most likely; nothing of GenAuth's says it was not sent).
    case requestRefused
    /// HTTP 429: GenAuth's QPS limit, a refusal at the gate (with or without its body); also a body 429 on
    /// any status but 2xx. The request was not processed; it proves nothing about the phone.
    case qpsLimited
    /// Body 429 on an HTTP 2xx: GenAuth's answer that this phone already had an SMS on this channel
    /// within its window ("sent too frequently"), the one answer that proves an earlier unanswered call
    /// of the same job went out (within that window: `ProofWindow`).
    case phoneWindowHeld
    /// HTTP 5xx without GenAuth's body: a gateway's or server's failure (a proxy's 502/504 comes after it
    /// forwarded the request, so GenAuth may have accepted it).
    case serverError
    /// Body 5xx (or a code above 699): GenAuth failing.
    case genauthFault
    /// Body 60x: the third-party SMS provider behind GenAuth failing.
    case providerFault
    /// An answer that says nothing certain (2xx/3xx/408 without GenAuth's body, body 200 on a non-2xx,
    /// an unknown body code below 400): not accepted, and nothing says trying again is useless.
    case unrecognised
    /// The request was written and no answer came: GenAuth may have accepted it.
    case unanswered
    /// The request never left this host: GenAuth cannot have acted on it.
    case notSent

    package static let allCases: [AnswerClass] = [
        .accepted, .callerFault, .requestRefused, .qpsLimited, .phoneWindowHeld,
        .serverError, .genauthFault, .providerFault, .unrecognised, .unanswered, .notSent,
    ]

    /// What becomes of the job, apart from its attempts and the delivery policy.
    package enum Verdict: Sendable, Equatable {
        /// The SMS went out.
        case sent
        /// Sending again cannot help.
        case permanentFailure
        /// Try again later if attempts remain.
        case transientFailure
    }

    package var verdict: Verdict {
        switch self {
        case .accepted: return .sent
        case .callerFault, .requestRefused: return .permanentFailure
        case .qpsLimited, .phoneWindowHeld, .serverError, .genauthFault, .providerFault, .unrecognised, .unanswered,
            .notSent:
            return .transientFailure
        }
    }

    /// GenAuth itself failing, what the circuit breaker counts: no answer, or a 5xx/60x one. Rate
    /// limits and the caller's faults are GenAuth working.
    package var isServerFault: Bool {
        switch self {
        case .serverError, .genauthFault, .providerFault, .unanswered, .notSent: return true
        case .accepted, .callerFault, .requestRefused, .qpsLimited, .phoneWindowHeld, .unrecognised: return false
        }
    }

    /// The request was written and nothing GenAuth answered says it was not accepted: the SMS may have
    /// gone out. Only a request never written (`notSent`) and GenAuth's own answers refusing it (its JSON
    /// body with a code other than 200, or its QPS limit's HTTP 429) are certain.
    package var mayHaveSent: Bool {
        switch self {
        case .unanswered, .serverError, .requestRefused, .unrecognised: return true
        case .accepted, .callerFault, .qpsLimited, .phoneWindowHeld, .genauthFault, .providerFault, .notSent: return false
        }
    }

    /// The `result` label of `smsd_api_calls_total` (the Grafana dashboard's names).
    package var metricLabel: String {
        switch self {
        case .accepted: return "ok"
        case .callerFault: return "body_4xx"
        case .requestRefused, .unrecognised: return "http_other"
        case .qpsLimited: return "http_429"
        case .phoneWindowHeld: return "body_429"
        case .serverError: return "http_5xx"
        case .genauthFault: return "body_5xx"
        case .providerFault: return "body_60x"
        case .unanswered: return "unanswered"
        case .notSent: return "not_sent"
        }
    }
}
