import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// The daemon's metrics, through swift-metrics (a no-op unless `metrics.listen` bootstraps Prometheus).
struct DispatcherMetrics: Sendable {
    let claimed = Metrics.Counter(label: "smsd_jobs_claimed_total")
    let inFlight = Gauge(label: "smsd_api_calls_in_flight")
    let queueDepth = Gauge(label: "smsd_queue_due_jobs")
    let breakerOpen = Gauge(label: "smsd_breaker_state")
    let apiLatency = Metrics.Timer(label: "smsd_api_latency_seconds")

    /// Counters made once: the per-job path only looks them up.
    private let outcomes: [String: Metrics.Counter] = Dictionary(uniqueKeysWithValues:
        ["sent", "failed", "rejected", "expired", "superseded", "cancelled", "retry", "deferred"].map {
            ($0, Metrics.Counter(label: "smsd_jobs_outcomes_total", dimensions: [("outcome", $0)]))
        })
    private let calls: [String: Metrics.Counter] = Dictionary(uniqueKeysWithValues:
        ["ok", "body_4xx", "body_429", "body_5xx", "body_60x", "http_429", "http_5xx", "http_other", "unanswered", "not_sent"].map {
            ($0, Metrics.Counter(label: "smsd_api_calls_total", dimensions: [("result", $0)]))
        })

    /// Jobs finished or put back, by what happened: sent, failed, rejected, expired, superseded, retry, deferred.
    func outcome(_ outcome: JobOutcome) {
        let name: String
        switch outcome.state {
        case .pending: name = outcome.deferredUntil == nil ? "retry" : "deferred"
        default: name = outcome.state.rawValue
        }
        outcomes[name]?.increment()
    }

    /// API calls by result class: ok, body_4xx, body_429, body_5xx, body_60x, http_429, http_5xx,
    /// http_other (another status without a GenAuth body), unanswered (written, no answer: GenAuth
    /// may have it), not_sent (never left this host).
    func call(_ result: CallResult, seconds: Double) {
        apiLatency.recordNanoseconds(Int64(seconds * 1e9))
        let kind: String
        switch result {
        case .unanswered: kind = "unanswered"
        case .notSent: kind = "not_sent"
        case .answered(let http, let body, _):
            if http == 429 { kind = "http_429" }
            else if http >= 500 { kind = "http_5xx" }
            else if let code = body?.statusCode {
                switch code {
                case 200: kind = "ok"
                case 429: kind = "body_429"
                case 400..<500: kind = "body_4xx"
                case 600..<700: kind = "body_60x"
                default: kind = "body_5xx"
                }
            } else { kind = "http_other" }
        }
        calls[kind]?.increment()
    }

    func breaker(_ phase: CircuitBreaker.Phase) {
        breakerOpen.record(phase == .closed ? 0 : phase == .halfOpen ? 1 : 2)
    }
}

/// Serves `GET /metrics` in Prometheus' text format on `metrics.listen` (loopback by default in the
/// example configuration). A swift-service-lifecycle service beside the dispatcher.
public struct MetricsEndpoint: Service {
    let registry: PrometheusCollectorRegistry
    let host: String
    let port: Int
    let logger: Logger

    /// Bootstraps swift-metrics with a Prometheus registry; call once, before the dispatcher starts.
    public static func bootstrap(listen: String, logger: Logger) -> MetricsEndpoint {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let colon = listen.lastIndex(of: ":")!
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return MetricsEndpoint(registry: registry, host: host, port: Int(listen[listen.index(after: colon)...]) ?? 9464,
                               logger: logger)
    }

    public func run() async throws {
        let router = Router()
        let registry = self.registry
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        var quiet = logger
        quiet.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "sms-dispatcher"),
                              logger: quiet)
        logger.notice("metrics endpoint listening", metadata: ["address": "\(host):\(port)"])
        try await app.runService(gracefulShutdownSignals: [])
    }
}
