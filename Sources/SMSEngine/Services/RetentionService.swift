import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// Deletes finished jobs (and their attempts) older than `retention.max_age_days`, in batches, and the
/// housekeeping's stale rows (`ForgetStaleRows`), in a task of its own so a long delete never delays a
/// heartbeat. River's cleaner. Every daemon runs it; runs that meet only find less to delete.
package struct RetentionService: Service {
    /// `retention.*`.
    package struct Configuration: Sendable, Equatable {
        /// Finished jobs older than this are deleted; zero keeps them (the housekeeping still runs).
        package var maxAge = Duration.seconds(30 * 86_400)
        package var batchSize = 1000
        package var interval = Duration.seconds(300)
        /// How long one run may delete for; a run that ran out of time with more to delete is
        /// followed by the next one after a breath, so retention keeps pace with any insert rate the
        /// database can delete at.
        package var budget = Duration.seconds(5)

        package init() {}
    }

    /// What one run did.
    struct Run: Sendable, Equatable {
        var deleted: Int
        /// The budget ran out with more left to delete.
        var more: Bool
    }

    let configuration: Configuration
    var session: DatabaseSession
    let logger: Logger
    /// Set when the daemon's stop begins: no new round after it.
    var stopping = StopFlag()

    mutating func rounds() async {
        let (configuration, logger) = (self.configuration, self.logger)
        // The first run waits one interval, so a restart loop does not hammer the table.
        await PeriodicTask.run(
            session: &session, every: configuration.interval, waitFirst: true,
            while: { [stopping] in !stopping.isSet }
        ) { db in
            guard let run = try await Self.apply(configuration, on: db) else { return nil }
            guard configuration.maxAge > .zero else { return nil }
            if run.deleted > 0 {
                logger.notice(
                    "retention deleted finished jobs",
                    metadata: [
                        "deleted": "\(run.deleted)", "older_than_days": "\(Int(configuration.maxAge.seconds / 86_400))",
                        "more": "\(run.more)",
                    ])
            }
            // Behind: go again after a breath rather than a whole interval.
            return run.more ? .seconds(1) : nil
        }
    }

    /// One run: finished jobs past their age (none when `maxAge` is zero: kept), then the housekeeping.
    /// No lock: daemons running it at once only find less to delete (a lock any login could hold, as
    /// the advisory lock this was, would turn retention off for the whole cluster).
    static func apply(_ configuration: Configuration, on db: PostgresConnection) async throws -> Run? {
        var purged = (deleted: 0, more: false)
        if configuration.maxAge > .zero {
            purged = try await PurgeFinished(olderThan: configuration.maxAge, batch: configuration.batchSize)
                .repeated(on: db, until: .now + configuration.budget)
        }
        try await db.run(ForgetStaleRows())
        // The reservation's key rows, a small batch a statement, within the run's budget.
        let until = ContinuousClock.now + configuration.budget
        while try await db.run(ForgetKeyLocks()) == ForgetKeyLocks().batch, ContinuousClock.now < until {}
        return Run(deleted: purged.deleted, more: purged.more)
    }
}

extension RetentionService {
    /// Its housekeeping rounds until its turn in the shutdown, which stops it at once (between rounds or in one:
    /// a round is a transaction that either commits or is rolled back).
    package func run() async throws {
        try await runUntilItsTurn {
            var service = self
            await service.rounds()
        }
    }
}
