import Logging
import PostgresClient
import SMSJobStore
import SMSModel

/// The dispatch loop: on each turn (a batch of `DispatchEvent`s) it claims due jobs up to the free
/// call slots, has triage settle what must not be sent, has admission reserve the rest, and hands the
/// granted ones to the sender. One statement at a time on its own session; the writer, the heartbeat
/// and the others have theirs. River's producer.
public struct ClaimLoop: Sendable {
    /// `concurrency`, `poll_interval`, `lease.duration`, `shutdown.grace`.
    public struct Configuration: Sendable, Equatable {
        /// API calls in flight per daemon.
        public var concurrency = 64
        /// How often the loop comes round when no notification arrives.
        public var pollInterval = Duration.seconds(1)
        /// How long a claimed job stays leased without a heartbeat.
        public var lease = Duration.seconds(30)
        /// How long a shutdown waits for calls in flight before it stops waiting (their jobs stay
        /// leased and are rescued when the lease runs out).
        public var shutdownGrace = Duration.seconds(10)

        public init() {}
    }

    /// Under load, calls finish one by one and each wakes this loop: claiming each single free slot
    /// would cost a statement per job. A few free slots wait up to this long for company; a quiet queue
    /// (many free slots) claims at once.
    static let claimLinger = Duration.milliseconds(2)

    let configuration: Configuration
    let identity: WorkerIdentity
    let triage: Triage
    let admission: Admission
    let sender: CallSender
    let events: DispatchEvents
    let writes: WriteQueue
    let leases: LeaseBook
    let stats: WorkerStats
    let breaker: CircuitBreaker
    let notifier: SystemdNotifier
    let logger: Logger
    var session: DatabaseSession

    /// What the loop carries from one turn to the next.
    private struct Turn {
        var inFlight = 0
        var shutdownStarted: ContinuousClock.Instant? = nil
        /// Claimed and sendable, not yet through the throttle (kept across a database outage).
        var awaitingReservation: [ValidJob] = []
        var lastClaim = ContinuousClock.now - .seconds(1)
        /// A `.lingerElapsed` is on its way.
        var lingerArmed = false
    }

    /// Returns once a shutdown has drained: every call answered and every outcome written, or the
    /// grace period over.
    mutating func run() async {
        var turn = Turn()
        while let batch = await events.next() {
            // The ticker wakes this loop every poll interval: if it stops coming round, the watchdog
            // goes hungry and systemd restarts the daemon.
            notifier.watchdog()
            for event in batch {
                switch event {
                case .callsFinished(let count):
                    turn.inFlight -= count
                case .shutdownRequested where turn.shutdownStarted == nil:
                    turn.shutdownStarted = .now
                    logger.notice("shutting down: no new claims", metadata: ["in_flight": "\(turn.inFlight)"])
                case .lingerElapsed:
                    turn.lingerArmed = false
                case .jobsAvailable, .tick, .outcomesWritten, .again, .shutdownRequested:
                    break
                }
            }
            stats.setInFlight(turn.inFlight)

            if let started = turn.shutdownStarted {
                // Claimed but never sent: back to pending at once, no attempt used.
                if !turn.awaitingReservation.isEmpty {
                    writes.submit(turn.awaitingReservation.map {
                        JobOutcome(job: $0.lease, state: .pending, message: "released unsent at daemon shutdown", retryIn: .zero)
                    })
                    turn.awaitingReservation = []
                    events.send(.again)
                    continue
                }
                // Done when every call has answered and the writer has written every outcome.
                if (turn.inFlight == 0 && writes.unsettled == 0) || ContinuousClock.now - started > configuration.shutdownGrace {
                    break
                }
                continue
            }
            // A reconnect waits up to 10 s of backoff and 10 s to connect, and each statement up to its
            // timeout: fed after each, the watchdog (30 s) only starves when the loop itself is stuck.
            guard let db = await session.connect() else { continue }
            notifier.watchdog()
            // Outcomes decided in this turn, handed to the writer together at its end.
            var settled: [JobOutcome] = []
            do {
                try await claimAndSend(on: db, turn: &turn, settled: &settled)
                session.succeeded()
            } catch {
                // Whatever the database said (gone, read-only, full, cancelled, a lock timeout): nothing
                // claimed is lost (candidates wait in `awaitingReservation`), the outage is logged once,
                // and a fresh session (maybe on a new primary) is tried with backoff.
                await session.failed(error)
            }
            writes.submit(settled)
        }
        if turn.inFlight > 0 {
            logger.warning("stopping with calls in flight after the grace period; their jobs stay leased until rescued",
                           metadata: ["in_flight": "\(turn.inFlight)"])
        }
    }

    private func claimAndSend(on db: PostgresConnection, turn: inout Turn, settled: inout [JobOutcome]) async throws {
        var candidates = turn.awaitingReservation
        // Outcomes not yet on their rows hold their jobs too: while the writer is a full round behind
        // (a slow or unreachable database), claim nothing more.
        let free = writes.unsettled >= configuration.concurrency
            ? 0 : configuration.concurrency - turn.inFlight - candidates.count
        let lingering = free > 0 && free < max(1, configuration.concurrency / 4)
            && ContinuousClock.now - turn.lastClaim < Self.claimLinger
        if lingering, !turn.lingerArmed {
            turn.lingerArmed = true
            let events = self.events
            Task {
                try? await Task.sleep(for: Self.claimLinger)
                events.send(.lingerElapsed)
            }
        }
        var claimedFullBatch = false
        if free > 0 && !lingering {
            turn.lastClaim = .now
            let claimed = try await db.run(ClaimJobs(worker: identity.id, limit: free, lease: configuration.lease))
            claimedFullBatch = claimed.count == free
            leases.hold(claimed.map(\.lease))
            notifier.watchdog()
            stats.countClaimed(claimed.count)
            for job in claimed {
                switch triage.decide(job) {
                case .send(let valid): candidates.append(valid)
                case .settle(let outcome): settled.append(outcome)
                }
            }
        }

        let plan = admission.plan(candidates)
        // The job holding the half-open breaker's probe, until its call starts: handed back if it makes
        // none (deferred, capped, lost, or the reservation failed).
        var probe = plan.probe
        defer { if probe != nil { breaker.releaseProbe() } }
        settled += plan.settled
        stats.count(settled)
        // Until the reservation is through, every candidate is still waiting for it.
        turn.awaitingReservation = plan.batch + plan.nextRound
        let verdicts = admission.apply(try await admission.reserve(plan.batch, on: db), to: plan.batch)
        turn.awaitingReservation = plan.nextRound + verdicts.unanswered
        if let probeJob = probe, verdicts.granted.contains(where: { $0.job.id == probeJob }) {
            // Its call starts now: the call's answer settles the probe.
            probe = nil
        }
        for job in verdicts.lost {
            // Rescued from under us (the lease ran out): no call, and no outcome of ours.
            leases.release(job.lease)
            logger.warning("job's lease passed on before its call; not sending it", metadata: ["job": "\(job.id)"])
        }
        settled += verdicts.settled
        stats.count(verdicts.settled)
        turn.inFlight += verdicts.granted.count
        sender.start(verdicts.granted)
        stats.setInFlight(turn.inFlight)
        // A full batch means more may be due: go round again at once. So do jobs waiting for a reservation.
        if claimedFullBatch || !turn.awaitingReservation.isEmpty { events.send(.again) }
    }
}
