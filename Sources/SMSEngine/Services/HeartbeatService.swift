import Foundation
import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// Keeps this process's worker row fresh and the leases of exactly the jobs it holds extended; then
/// tells systemd and the metrics how things stand. First of the dispatcher's services, so the last to
/// stop: leases stay extended while the last calls finish and their outcomes are written.
package struct HeartbeatService: Service {
    /// `heartbeat.interval`.
    package struct Configuration: Sendable, Equatable {
        package var interval = Duration.seconds(5)

        package init() {}
    }

    let configuration: Configuration
    let identity: WorkerIdentity
    /// `lease.duration`: how far each beat extends the held leases.
    let lease: Duration
    /// The channel rules in force now (a reload may have changed them before the first beat).
    let settings: LiveSettings.Holder
    let leases: LeaseBook
    let stats: WorkerStats
    let writes: WriteQueue
    /// Refreshed on every beat: the fallback for a lost `sms_controls` notification.
    let pauses: PauseBoard
    let reporter: StatusReporter
    var session: DatabaseSession
    let logger: Logger

    /// A daemon whose heartbeat is older than this is not counted as live.
    var staleAfter: Duration { max(configuration.interval * 3, .seconds(10)) }

    mutating func beat() async {
        // The channel settings' generation last published: the start's, then each reload's.
        var publishedGeneration: Int? = nil
        var warnedSharedID = false
        let (identity, lease, leases, stats, writes, reporter, logger, settings, staleAfter, pauses) =
            (
                self.identity, self.lease, self.leases, self.stats, self.writes, self.reporter, self.logger, self.settings,
                self.staleAfter, self.pauses
            )
        await PeriodicTask.run(session: &session, every: configuration.interval) { db in
            // The leases first, and on their own: a statement that gives up (a lock on sms.jobs held by
            // an operator, a slow count) keeps neither the leases from being extended nor the worker
            // row, which shows the backlog, from being written. A broken connection ends the round.
            var failed: PostgresError? = nil
            let held = leases.held()
            do {
                if !held.isEmpty { try await db.run(ExtendLeases(held: held, lease: lease)) }
            } catch let error as PostgresError where error.disposition != .connection {
                failed = error
            }
            // Before the first worker row (so a worker row means the settings are out), and again after
            // a reload: the channels' default priorities (for the insert trigger) and TTLs (for the
            // expiry of paused jobs). Again on the next beat if the statement failed.
            let current = settings.snapshot
            if publishedGeneration != current.generation {
                try await db.run(PublishChannelSettings(rules: current.settings.triage.rules))
                publishedGeneration = current.generation
            }
            let snapshot = stats.snapshot()
            let stuck = writes.stuckSince.map { ContinuousClock.now - $0 }
            try await db.run(
                WorkerHeartbeat(
                    worker: identity, inFlight: snapshot.inFlight, counters: snapshot.counters,
                    unwritten: writes.unsettled, oldestUnwritten: stuck))
            let live = try await db.run(CountLiveWorkers(worker: identity, staleAfter: staleAfter))
            if live.sharingID > 0, !warnedSharedID {
                warnedSharedID = true
                logger.warning(
                    "another live daemon uses this worker.id; each still holds only its own jobs, but give every daemon its own id",
                    metadata: ["others": "\(live.sharingID)"])
            }
            pauses.update(try await db.run(ListPauses()))
            try await reporter.report(
                snapshot, live: live.live, stuck: stuck, unwritten: writes.unsettled,
                pauses: pauses.pauses, on: db)
            if let failed { throw failed }
            return nil
        }
    }
}

/// The daemon's state for those watching it: the systemd STATUS line and the queue-depth and breaker
/// gauges, refreshed on each heartbeat.
struct StatusReporter: Sendable {
    let notifier: SystemdNotifier
    let metrics: DispatcherMetrics
    let breaker: CircuitBreaker
    /// The queue depth costs a count per beat: only with `metrics.listen` set.
    let publishesQueueDepth: Bool

    func report(
        _ snapshot: (inFlight: Int, counters: WorkerCounters), live: Int, stuck: Duration?, unwritten: Int,
        pauses: Pauses, on db: PostgresConnection
    ) async throws {
        if publishesQueueDepth {
            metrics.queueDepth.record(try await db.run(CountDueJobs()))
            metrics.breaker(breaker.phase)
        }
        let c = snapshot.counters
        let writer =
            stuck.map { String(format: "; write-back failing for %.0f s (%d outcomes waiting)", $0.seconds, unwritten) } ?? ""
        let paused = pauses.isEmpty ? "" : "; paused: " + pauses.all.map { $0.scope.shown }.joined(separator: ", ")
        notifier.status(
            "in flight \(snapshot.inFlight); since start: sent \(c.sent), failed \(c.failed), retried \(c.retried), rejected \(c.rejected), expired \(c.expired), deferred \(c.deferred); breaker \(breaker.phase.rawValue); \(live) daemon(s) live\(writer)\(paused)"
        )
    }
}

extension HeartbeatService {
    /// Beats until its turn in the shutdown (the last), then stops at once.
    package func run() async throws {
        try await cancelWhenGracefulShutdown {
            var heartbeat = self
            await heartbeat.beat()
        }
    }
}
