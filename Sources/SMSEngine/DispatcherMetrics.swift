import GenAuth
import Metrics
import SMSModel

/// The daemon's metrics, through swift-metrics: a no-op unless the process bootstraps a backend (the
/// command line does, with Prometheus, when `metrics.listen` is set; see SMSMetricsEndpoint).
struct DispatcherMetrics: Sendable {
    let claimed = Metrics.Counter(label: "smsd_jobs_claimed_total")
    let inFlight = Gauge(label: "smsd_api_calls_in_flight")
    let queueDepth = Gauge(label: "smsd_queue_due_jobs")
    let breakerOpen = Gauge(label: "smsd_breaker_state")
    let apiLatency = Metrics.Timer(label: "smsd_api_latency_seconds")
    /// Calls GenAuth accepted after its window to prove an earlier unanswered call of the same job had
    /// closed: a second SMS is possible for each (the row says so).
    let possibleDuplicates = Metrics.Counter(label: "smsd_possible_duplicates_total")

    /// Counters made once: the per-job path only looks them up.
    private let outcomes: [String: Metrics.Counter] = Dictionary(
        uniqueKeysWithValues: ["sent", "failed", "rejected", "expired", "superseded", "cancelled", "retry", "deferred"].map {
            ($0, Metrics.Counter(label: "smsd_jobs_outcomes_total", dimensions: [("outcome", $0)]))
        })
    private let calls: [AnswerClass: Metrics.Counter] = Dictionary(
        uniqueKeysWithValues: AnswerClass.allCases.map {
            ($0, Metrics.Counter(label: "smsd_api_calls_total", dimensions: [("result", $0.metricLabel)]))
        })

    /// Jobs finished or put back, by what happened: sent, failed, rejected, expired, superseded, retry, deferred.
    func outcome(_ outcome: JobOutcome) {
        let name: String
        switch outcome.next {
        case .finished(let state): name = state.rawValue
        case .deferred: name = "deferred"
        case .retry, .putBack: name = "retry"
        }
        outcomes[name]?.increment()
    }

    /// API calls by their class's label (`AnswerClass.metricLabel`), and their latency.
    func call(_ answer: AnswerClass, duration: Duration) {
        apiLatency.recordNanoseconds(Int64(duration.seconds * 1e9))
        calls[answer]?.increment()
    }

    func breaker(_ phase: CircuitBreaker.Phase) {
        breakerOpen.record(phase == .closed ? 0 : phase == .halfOpen ? 1 : 2)
    }
}
