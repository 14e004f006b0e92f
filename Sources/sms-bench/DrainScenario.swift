import ArgumentParser
import Foundation
import PostgresClient

extension Bench {
    struct DrainResult {
        var rate: Double
        var peakRSSMB: Double
        var cpuPercent: Double
        /// Resident set size when 10, 25, 50, 75 and 100% of the jobs were done: growth shows here.
        var rssByProgress: [Double]
    }

    func drain(admin: String, jobs: Int, latencyMs: Int, history: Int) async throws -> DrainResult {
        let database = try await freshDatabase(admin: admin)
        let db = try await PostgresConnection.connect(database)
        if history > 0 {
            // Finished rows in bulk, as months of production would leave them.
            try await db.query("""
                INSERT INTO sms.jobs (channel, phone_number, state, attempts, status_code, request_id, created_at, sent_at, finished_at)
                SELECT 'CHANNEL_LOGIN', '150' || lpad(g::text, 8, '0'), 'sent', 1, 200, md5(g::text),
                       now() - interval '2 days', now() - interval '2 days', now() - interval '2 days'
                FROM generate_series(1, \(history)) g
                """)
            try await db.execute("VACUUM ANALYZE sms.jobs")
        }
        try await db.query("""
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '13' || lpad(g::text, 9, '0') FROM generate_series(1, \(jobs)) g
            """)
        let sandbox = try await startSandbox(latencyMs: latencyMs)
        defer { sandbox.process.terminate() }
        let daemon = try startDaemon(database: database, sandbox: sandbox.url)
        defer { stop(daemon) }
        let started = ContinuousClock.now
        let cpuBefore = cpuSeconds(daemon.processIdentifier)
        var peakRSS = 0.0
        let marks = [0.10, 0.25, 0.50, 0.75]
        var rssByProgress: [Double] = []
        var polls = 0
        while ContinuousClock.now - started < .seconds(1800) {
            try await Task.sleep(for: .milliseconds(250))
            polls += 1
            peakRSS = max(peakRSS, rssMB(daemon.processIdentifier, field: "VmHWM:"))
            // Counting 100,000 open jobs four times a second would take CPU from what is measured:
            // a cheap "any left?" each time, the count every 2 s (for the RSS marks).
            let anyLeft = try await db.query("""
                SELECT EXISTS (SELECT 1 FROM sms.jobs WHERE state IN ('pending', 'running')) AS any
                """).first?.bool("any") ?? true
            let left = !anyLeft ? 0 : polls % 8 != 0 ? jobs
                : try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state IN ('pending', 'running')").first?.int("n") ?? 0
            while rssByProgress.count < marks.count, Double(jobs - left) >= marks[rssByProgress.count] * Double(jobs) {
                rssByProgress.append(rssMB(daemon.processIdentifier, field: "VmRSS:"))
            }
            if left == 0 {
                rssByProgress.append(rssMB(daemon.processIdentifier, field: "VmRSS:"))
                break
            }
            guard daemon.isRunning else { throw ValidationError("the daemon died") }
        }
        let cpuAfter = cpuSeconds(daemon.processIdentifier)
        // First call to last write-back, by the database's clock (both ends by index: the history
        // rows have no attempts and finished days ago).
        let span = try await db.query("""
            SELECT extract(epoch FROM (SELECT max(finished_at) FROM sms.jobs)
                                      - (SELECT min(started_at) FROM sms.attempts))::float8 AS seconds
            """).first?.double("seconds") ?? 1
        await db.close()
        let wall = (ContinuousClock.now - started)
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        return DrainResult(rate: Double(jobs) / max(span, 0.001), peakRSSMB: peakRSS,
                           cpuPercent: (cpuAfter - cpuBefore) / max(min(span, wallSeconds), 0.001) * 100,
                           rssByProgress: rssByProgress)
    }
}
