import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// Serves `GET /metrics` in Prometheus' text format on `metrics.listen` (loopback by default in the
/// example configuration). A swift-service-lifecycle service beside the dispatcher.
package struct MetricsEndpoint: Service {
    let registry: PrometheusCollectorRegistry
    let host: String
    let port: Int
    let logger: Logger

    /// Bootstraps swift-metrics with a Prometheus registry; call once, before the dispatcher starts.
    package static func bootstrap(listen: String, logger: Logger) -> MetricsEndpoint {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let colon = listen.lastIndex(of: ":")!
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return MetricsEndpoint(
            registry: registry, host: host, port: Int(listen[listen.index(after: colon)...]) ?? 9464,
            logger: logger)
    }

    package func run() async throws {
        let router = Router()
        let registry = self.registry
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        var quiet = logger
        quiet.logLevel = .warning
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "sms-dispatcher"),
            logger: quiet)
        logger.notice("metrics endpoint listening", metadata: ["address": "\(host):\(port)"])
        try await app.runService(gracefulShutdownSignals: [])
    }
}
