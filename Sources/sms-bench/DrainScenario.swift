import ArgumentParser
import Foundation
import PostgresClient
import SMSModel

extension Bench {
    struct DrainResult {
        var rate: Double
        var peakRSSMB: Double
        var cpuPercent: Double
        /// Resident set size when 10, 25, 50, 75 and 100% of the jobs were done: growth shows here.
        var rssByProgress: [Double]
        /// Jobs that ended `rejected` (the fraud guard's stops among them): 0 for a fair figure.
        var rejected: Int
        /// What the database did from the daemon's start to the end of the drain (the jobs' inserts
        /// are before it, not in it).
        var load: DatabaseLoad
        var jobs: Int

        var walBytesPerJob: Double { load.walBytes / Double(max(jobs, 1)) }
    }

    /// The drains' jobs: distinct valid +86 mobile numbers spread over the number space (g × a prime,
    /// modulo 10^9: at most 2 per 10,000-number prefix up to 100,000 jobs, 11 in a million, so the
    /// guard's per-prefix limit of 50 stops none), each with its own client_ip and user_ref (so the
    /// guard counts and checks every key of every job, and stops none). All `13…`: the sandbox scripts
    /// faults for `17K000N####` (hangs, errors), which a drain must not meet.
    static func spreadJobsSQL(_ count: Int) -> String {
        """
        INSERT INTO sms.jobs (channel, phone_number, client_ip, user_ref)
        SELECT 'CHANNEL_LOGIN', '13' || lpad(((g::bigint * 982451653) % 1000000000)::text, 9, '0'),
               '10.0.0.0'::inet + g, 'user-' || g
        FROM generate_series(1, \(count)) g
        """
    }

    /// The running jobs, through their claims' lease rows (no index names the state; a scan of a
    /// history of millions four times a second would take CPU from what is measured).
    static let runningJobsSQL = """
        SELECT j.id FROM sms.leases l JOIN sms.jobs j ON j.id = ANY (l.job_ids) AND j.lease_token = l.lease_token
        WHERE j.state = 'running'
        """

    /// `fraudMode`: the daemon's `fraud.mode` (nil: its default, enforce).
    func drain(
        admin: String, jobs: Int, latencyMs: Int, history: Int, fraudMode: FraudSettings.Mode? = nil
    ) async throws -> DrainResult {
        let database = try await freshDatabase(admin: admin)
        let db = try await PostgresConnection.connect(database)
        if history > 0 {
            // Finished rows in bulk, as months of production would leave them.
            try await db.query(
                """
                INSERT INTO sms.jobs (channel, phone_number, state, attempts, status_code, request_id, created_at, sent_at, finished_at)
                SELECT 'CHANNEL_LOGIN', '150' || lpad(g::text, 8, '0'), 'sent', 1, 200, md5(g::text),
                       now() - interval '2 days', now() - interval '2 days', now() - interval '2 days'
                FROM generate_series(1, \(history)) g
                """)
            try await db.execute("VACUUM ANALYZE sms.jobs")
        }
        try await db.query(Self.spreadJobsSQL(jobs))
        // Only the drain's statements are counted (the cluster-wide counters start again here).
        if try await db.query("SELECT to_regclass('pg_stat_statements') IS NOT NULL AS t").first?.bool("t") == true {
            try await db.query("SELECT pg_stat_statements_reset()")
        }
        let before = try await LoadSnapshot.take(db)
        let backends = BackendCPU()
        let sandbox = try await startSandbox(latencyMs: latencyMs)
        defer { sandbox.process.terminate() }
        let daemon = try startDaemon(
            database: daemonURL(database), sandbox: sandbox.url,
            environment: fraudMode.map { ["SMSD_FRAUD_MODE": $0.rawValue] } ?? [:])
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
            try await backends.sample(db, cpu: cpuSeconds)
            // Counting 100,000 open jobs four times a second would take CPU from what is measured:
            // a cheap "any left?" each time, the count every 2 s (for the RSS marks).
            let anyLeft =
                try await db.query(
                    """
                    SELECT EXISTS (SELECT 1 FROM sms.jobs WHERE due_at IS NOT NULL)
                           OR EXISTS (\(Self.runningJobsSQL)) AS any
                    """
                ).first?.bool("any") ?? true
            let left =
                !anyLeft
                ? 0
                : polls % 8 != 0
                    ? jobs
                    : try await db.query(
                        """
                        SELECT (SELECT count(*) FROM sms.jobs WHERE due_at IS NOT NULL)::int
                               + (SELECT count(*) FROM (\(Self.runningJobsSQL)) r)::int AS n
                        """
                    ).first?.int("n") ?? 0
            while rssByProgress.count < marks.count, Double(jobs - left) >= marks[rssByProgress.count] * Double(jobs) {
                rssByProgress.append(rssMB(daemon.processIdentifier, field: "VmRSS:"))
            }
            if left == 0 {
                rssByProgress.append(rssMB(daemon.processIdentifier, field: "VmRSS:"))
                break
            }
            guard daemon.isRunning else { throw ValidationError("the daemon died") }
        }
        guard ContinuousClock.now - started < .seconds(1800) else {
            throw ValidationError("the drain did not finish within 30 minutes")
        }
        let cpuAfter = cpuSeconds(daemon.processIdentifier)
        try await backends.sample(db, cpu: cpuSeconds)
        // First call to last write-back, by the database's clock (both ends by index: the history
        // rows have no attempts and finished days ago).
        let span =
            try await db.query(
                """
                SELECT extract(epoch FROM (SELECT max(finished_at) FROM sms.jobs)
                                          - (SELECT min(started_at) FROM sms.attempts))::float8 AS seconds
                """
            ).first?.double("seconds") ?? 1
        let rejected = try await db.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'rejected'").first?.int("n") ?? 0
        // The transaction counter is reported by each backend every 0.5 s at most.
        try await Task.sleep(for: .milliseconds(600))
        let load = try await before.load(to: try await LoadSnapshot.take(db), cpu: backends, db)
        await db.close()
        let wall = (ContinuousClock.now - started)
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        return DrainResult(
            rate: Double(jobs) / max(span, 0.001), peakRSSMB: peakRSS,
            cpuPercent: (cpuAfter - cpuBefore) / max(min(span, wallSeconds), 0.001) * 100,
            rssByProgress: rssByProgress, rejected: rejected, load: load, jobs: jobs)
    }
}
