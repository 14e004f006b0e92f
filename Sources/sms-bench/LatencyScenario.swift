import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import PostgresClient
import SMSJobStore

extension Bench {
    struct LatencyFigures {
        /// Insert → the sandbox receiving the call, ms.
        var call: (p50: Double, p99: Double, max: Double)
        /// The write-back statement's start (`finished_at`, its `now()`) → a LISTENing producer holding
        /// the `sms_job_events` notification, ms: the statement, its commit and the delivery.
        var event: (p50: Double, p99: Double, max: Double)
    }

    func latencyRun(admin: String, perSecond: Int, seconds: Int) async throws -> LatencyFigures {
        let database = try await freshDatabase(admin: admin)
        let sandbox = try await startSandbox(latencyMs: 0)
        defer { sandbox.process.terminate() }
        let daemon = try startDaemon(database: daemonURL(database), sandbox: sandbox.url)
        defer { stop(daemon) }
        let db = try await PostgresConnection.connect(database)
        // A producer listening for results, as a login endpoint would: the receipt time of each job's
        // first announcement of a final state.
        let listener = try await PostgresConnection.connect(database)
        try await listener.listen(NotificationChannel.jobEvents.rawValue)
        let receipts = Task { () -> [Int64: Double] in
            var heard: [Int64: Double] = [:]
            let stopAt = ContinuousClock.now + .seconds(seconds + 90)
            while !Task.isCancelled && ContinuousClock.now < stopAt {
                guard let received = try? await listener.waitForNotifications(timeout: .milliseconds(100)) else { break }
                let at = Date().timeIntervalSince1970
                for note in received {
                    for event in JobEvent.parse(payload: note.payload) where event.state != "pending" && heard[event.id] == nil {
                        heard[event.id] = at
                    }
                }
            }
            return heard
        }
        try await Task.sleep(for: .seconds(1))  // the daemon is up and listening
        let total = perSecond * seconds
        let start = ContinuousClock.now
        for index in 0..<total {
            let due = start + .nanoseconds(Int64(index) * 1_000_000_000 / Int64(perSecond))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            // As the drains' jobs (spreadJobsSQL): numbers spread over the number space, one client_ip
            // and user_ref each, so the fraud guard decides on every job and stops none.
            let g = Int64(index + 1)
            try await db.query(
                "INSERT INTO sms.jobs (channel, phone_number, client_ip, user_ref) VALUES ('CHANNEL_LOGIN', $1, '10.0.0.0'::inet + $2::bigint, 'user-' || $2)",
                ["13" + String(format: "%09lld", g * 982_451_653 % 1_000_000_000), String(g)], prepared: true)
        }
        for _ in 0..<240 {
            let left =
                try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state IN ('pending', 'running')").first?.int(
                    "n") ?? 0
            if left == 0 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let created = try await db.query(
            "SELECT id, phone_number, extract(epoch FROM created_at)::float8 AS t, extract(epoch FROM finished_at)::float8 AS f FROM sms.jobs"
        ).rows
        await db.close()
        try await Task.sleep(for: .milliseconds(300))  // the last notifications arrive
        receipts.cancel()
        let heard = await receipts.value
        await listener.close()
        var eventDelays: [Double] = []
        for row in created {
            if let id = try row.int("id"), let finished = try row.double("f"), let at = heard[Int64(id)] {
                eventDelays.append(max(0, (at - finished) * 1000))
            }
        }
        eventDelays.sort()
        guard !eventDelays.isEmpty else { throw ValidationError("no sms_job_events notification measured") }
        var insertedAt: [String: Double] = [:]
        for row in created { insertedAt[try row.requiredString("phone_number")] = try row.double("t") }
        let report = try await sandboxReport(sandbox.url)
        var latencies = report.compactMap { send -> Double? in
            insertedAt[send.phoneNumber].map { (send.at - $0) * 1000 }
        }.sorted()
        guard !latencies.isEmpty else { throw ValidationError("no sends measured") }
        latencies = latencies.map { max(0, $0) }
        func percentiles(_ sorted: [Double]) -> (p50: Double, p99: Double, max: Double) {
            func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
            return (percentile(0.5), percentile(0.99), sorted.last!)
        }
        return LatencyFigures(call: percentiles(latencies), event: percentiles(eventDelays))
    }

    struct Send: Decodable {
        let phoneNumber: String
        let at: Double
    }

    func sandboxReport(_ url: String) async throws -> [Send] {
        struct Report: Decodable { let accepted: [Send] }
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: url + "/__sandbox/sends"), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 512 * 1024 * 1024)
        return try JSONDecoder().decode(Report.self, from: Data(body.readableBytesView)).accepted
    }
}
