import ArgumentParser
import Foundation
import PostgresClient
import SMSJobStore
import SMSModel

extension Bench {
    /// The daemon's own statements, the very types and bindings it runs (`ClaimJobs`, `ReserveSends`,
    /// `CompleteJobs`), on two connections through the same libpq wrapper, with no HTTP in between:
    /// what PostgreSQL on this machine allows for the daemon's database work, every job sent on its
    /// first call.
    func statementCeiling(admin: String, jobs: Int) async throws -> Double {
        let database = try await freshDatabase(admin: admin)
        let setup = try await PostgresConnection.connect(database)
        try await setup.query(Self.spreadJobsSQL(jobs))
        await setup.close()
        let batch = concurrency
        // The daemon's defaults (`fraud.*`): the guard on, enforcing, deciding on every job.
        let fraud = FraudSettings()
        let started = ContinuousClock.now
        let (sent, stopped) = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for client in 0..<2 {
                group.addTask {
                    let db = try await PostgresConnection.connect(database)
                    defer { Task { await db.close() } }
                    var sent = 0
                    var stopped = 0
                    // Bounded: every round sends a batch or finds the queue empty.
                    for _ in 0...(jobs / batch + 1) {
                        let claimed = try await db.run(ClaimJobs(worker: "bench-\(client)", limit: batch, lease: .seconds(30)))
                        if claimed.isEmpty { break }
                        let valid = try claimed.map { job in
                            ValidJob(
                                claimed: job, channel: .login,
                                phone: try ValidatedPhone.validate(number: job.phoneNumber, countryCode: nil).get(),
                                rule: ChannelRule())
                        }
                        let verdicts = try await db.run(
                            ReserveSends(
                                jobs: valid, window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0,
                                fraud: fraud))
                        let now = ContinuousClock.now
                        // Only what the reservation granted is "sent": a job the guard stopped would
                        // have been rejected, a cheaper write-back that would flatter the figure.
                        let granted = valid.filter {
                            if case .granted = verdicts.verdicts[$0.id] { return true } else { return false }
                        }
                        stopped += valid.count - granted.count
                        let outcomes = granted.map { job in
                            JobOutcome(
                                job: job.lease, state: .sent, message: "",
                                call: CallRecord(
                                    httpStatus: 200, statusCode: 200, message: "",
                                    requestID: String(UInt64.random(in: 0...UInt64.max), radix: 16),
                                    startedAt: now, finishedAt: now),
                                coalesce: true)
                        }
                        sent += try await db.run(
                            CompleteJobs(
                                worker: "bench-\(client)", outcomes: outcomes,
                                throttleWindow: .seconds(60), now: now)
                        ).updated
                    }
                    return (sent, stopped)
                }
            }
            return try await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
        }
        let elapsed = (ContinuousClock.now - started).seconds
        guard sent > 0 else { throw ValidationError("the statement ceiling sent nothing") }
        if stopped > 0 { print("ceiling: \(stopped) jobs not granted (fraud guard or throttle): the figure is not comparable") }
        return Double(sent) / elapsed
    }
}
