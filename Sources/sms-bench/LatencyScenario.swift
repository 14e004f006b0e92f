import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import PostgresClient

extension Bench {
    func latencyRun(admin: String, perSecond: Int, seconds: Int) async throws -> (p50: Double, p99: Double, max: Double) {
        let database = try await freshDatabase(admin: admin)
        let sandbox = try await startSandbox(latencyMs: 0)
        defer { sandbox.process.terminate() }
        let daemon = try startDaemon(database: database, sandbox: sandbox.url)
        defer { stop(daemon) }
        let db = try await PostgresConnection.connect(database)
        try await Task.sleep(for: .seconds(1))  // the daemon is up and listening
        let total = perSecond * seconds
        let start = ContinuousClock.now
        for index in 0..<total {
            let due = start + .nanoseconds(Int64(index) * 1_000_000_000 / Int64(perSecond))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            try await db.query("INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', $1)",
                               ["14" + String(format: "%09d", index)], prepared: true)
        }
        for _ in 0..<240 {
            let left = try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state IN ('pending', 'running')").first?.int("n") ?? 0
            if left == 0 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let created = try await db.query("SELECT phone_number, extract(epoch FROM created_at)::float8 AS t FROM sms.jobs").rows
        await db.close()
        var insertedAt: [String: Double] = [:]
        for row in created { insertedAt[try row.requiredString("phone_number")] = try row.double("t") }
        let report = try await sandboxReport(sandbox.url)
        var latencies = report.compactMap { send -> Double? in
            insertedAt[send.phoneNumber].map { (send.at - $0) * 1000 }
        }.sorted()
        guard !latencies.isEmpty else { throw ValidationError("no sends measured") }
        latencies = latencies.map { max(0, $0) }
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        return (percentile(0.5), percentile(0.99), latencies.last!)
    }

    struct Send: Decodable {
        let phoneNumber: String
        let at: Double
    }

    func sandboxReport(_ url: String) async throws -> [Send] {
        struct Report: Decodable { let accepted: [Send] }
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/__sandbox/sends"), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 512 * 1024 * 1024)
        return try JSONDecoder().decode(Report.self, from: Data(body.readableBytesView)).accepted
    }
}
