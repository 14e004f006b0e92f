import Foundation
import GenAuth
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Testing

@Suite("Grafana dashboard")
struct DashboardTests {
    @Test func queriesOnlyMetricsTheDaemonExports() throws {
        let path = TestEnvironment.repositoryRoot.appendingPathComponent("config/grafana-dashboard.json").path
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        let panels = try #require(object["panels"] as? [[String: Any]])
        #expect(panels.count >= 6)
        let exported = [
            "smsd_jobs_outcomes_total", "smsd_api_calls_total", "smsd_api_latency_seconds_bucket",
            "smsd_api_calls_in_flight", "smsd_queue_due_jobs", "smsd_breaker_state", "smsd_jobs_claimed_total",
            "smsd_fraud_decisions_total", "smsd_fraud_blocks",
        ]
        for panel in panels {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                let expr = try #require(target["expr"] as? String)
                #expect(exported.contains { expr.contains($0) }, "\(expr)")
            }
        }
    }
}
