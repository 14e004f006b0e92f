import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// The dispatch loop: on each turn (a batch of `DispatchEvent`s) it claims due jobs up to the free
/// call slots, has triage settle what must not be sent, has admission reserve the rest, and hands the
/// granted ones to the sender. One statement at a time on its own session; the writer, the heartbeat
/// and the others have theirs. River's producer.
///
/// The live settings (rules, retries, caps, rate limit) are read once at the start of each batch and
/// passed to triage and admission, so a reload (SIGHUP) takes effect from the next batch and never in
/// the middle of one.
package struct ClaimLoop: Service {
    /// `concurrency`, `poll_interval`, `lease.duration`, `shutdown.grace`.
    package struct Configuration: Sendable, Equatable {
        /// API calls in flight per daemon.
        package var concurrency = 64
        /// How often the loop comes round when no notification arrives.
        package var pollInterval = Duration.seconds(1)
        /// How long a claimed job stays leased without a heartbeat.
        package var lease = Duration.seconds(30)
        /// How long a shutdown waits for calls in flight before it stops waiting (their jobs stay
        /// leased and are rescued when the lease runs out).
        package var shutdownGrace = Duration.seconds(10)
        /// `genauth.timeout` (set by the dispatcher): how long a call may take.
        package var callTimeout = Duration.seconds(10)

        /// How long a drain waits for calls in flight: `shutdown.grace`, and never less than a call
        /// started at the last moment needs (its slot up to `CallSender.recheckBeyond` into the drain,
        /// then its timeout): a call the drain stopped waiting for is rescued as "stopped during the
        /// call", although its daemon would have known how it ended.
        package var drainLimit: Duration {
            max(shutdownGrace, callTimeout + CallSender.recheckBeyond + .milliseconds(500))
        }

        package init() {}
    }

    /// Under load, calls finish one by one and each wakes this loop: claiming each single free slot
    /// would cost a statement per job. A few free slots wait up to this long for company; a quiet queue
    /// (many free slots) claims at once.
    static let claimLinger = Duration.milliseconds(2)

    let configuration: Configuration
    let identity: WorkerIdentity
    /// Read at the start of each batch: the settings a reload may change.
    let settings: LiveSettings.Holder
    /// Given each batch's triage with its calls.
    let sender: CallSender
    let events: DispatchEvents
    let writes: WriteQueue
    let leases: LeaseBook
    let stats: WorkerStats
    let breaker: CircuitBreaker
    let fraud: FraudBoard
    let notifier: SystemdNotifier
    let logger: Logger
    var session: DatabaseSession

    /// Returns once a shutdown has drained (every call answered and every outcome written, or the
    /// grace period over), or when its task is cancelled.
    mutating func turns() async {
        var machine = StateMachine(
            concurrency: configuration.concurrency, drainLimit: configuration.drainLimit,
            claimLinger: Self.claimLinger, now: .now)
        guard var batch = await events.next() else { return }
        turns: while true {
            // The ticker wakes this loop every poll interval: if it stops coming round, the watchdog
            // goes hungry and systemd restarts the daemon.
            notifier.watchdog()
            if machine.receive(batch, now: .now) {
                logger.notice("shutting down: no new claims", metadata: ["in_flight": "\(machine.inFlight)"])
                // The drain's deadline, seen when it comes (the ticker's clock may be up to 10 s away).
                events.send(.clock, after: configuration.drainLimit + .milliseconds(10))
            }
            // On the poll tick (and the clock between), not a timer per call: the sender starts calls
            // without a Swift task each, on purpose. A call whose end never came by its deadline frees
            // its slot (`CallBook`); its `.callsFinished` arrives with the next events.
            if machine.inFlight > 0, batch.contains(where: { $0 == .tick || $0 == .clock }) { sender.reclaimOverdue() }
            stats.setInFlight(machine.inFlight)
            let decision = machine.next(unsettled: writes.unsettled, now: .now)
            for timer in decision.timers {
                switch timer {
                case .linger: events.send(.lingerElapsed, after: Self.claimLinger)
                case .recheck: events.send(.recheckElapsed, after: StateMachine.recheck)
                }
            }
            switch decision.action {
            case .stop:
                break turns
            case .wait:
                guard let next = await events.next() else { break turns }
                batch = next
                continue turns
            case .releaseUnsent(let jobs):
                writes.submit(
                    jobs.map {
                        .putBack($0.lease, because: "released unsent at daemon shutdown")
                    })
            case .claim(let limit):
                await turn(claiming: limit, machine: &machine)
            case .reserve:
                await turn(claiming: nil, machine: &machine)
            }
            // Ask again at once, with whatever came meanwhile.
            guard let arrived = events.takeNow() else { break turns }
            batch = arrived
        }
        if machine.inFlight > 0 {
            logger.warning(
                "stopping with calls in flight after the grace period; their jobs stay leased until rescued",
                metadata: ["in_flight": "\(machine.inFlight)"])
        }
    }

    /// One turn on the database: claim up to `limit` jobs (nil: none) and reserve them with those
    /// awaiting their reservation; the outcomes it decided go to the writer at its end, and how it ended
    /// to the state machine.
    private mutating func turn(claiming limit: Int?, machine: inout StateMachine) async {
        // A reconnect waits up to 10 s of backoff and 10 s to connect, and each statement up to
        // its timeout: fed after each, the watchdog (30 s) only starves when the loop itself is stuck.
        guard let db = await session.connect() else {
            machine.turnEnded(.noSession)
            return
        }
        notifier.watchdog()
        // The heartbeat publishes a reload's channel priorities and TTLs (sms.channel_settings).
        let live = settings.snapshot.settings
        let triage = Triage(configuration: live.triage, throttleWindow: live.admission.throttleWindow)
        var admission = Admission(configuration: live.admission, breaker: breaker, triage: triage)
        admission.pollInterval = configuration.pollInterval
        // A claim and the reservation of what it claimed commit together: one WAL flush between a job's
        // insert and its call instead of two, and the reservation need not lock rows its own
        // transaction holds. Jobs awaiting their reservation from an earlier turn ride along. The turn
        // runs on the connection's thread in one go (`Turn`).
        let turn = await Turn.run(
            worker: identity.id, claiming: limit, lease: configuration.lease,
            candidates: machine.candidates, triage: triage, admission: admission, on: db)
        leases.hold(turn.claimed.map(\.lease))
        notifier.watchdog()
        // Outcomes decided in this turn, handed to the writer together at its end (the breaker's
        // deferrals are settled even if the reservation failed).
        var settled = turn.settled + (turn.plan?.settled ?? [])
        // After a failure every job of the plan still awaits its reservation.
        func waiting() -> [ValidJob] { turn.plan.map { $0.batch + $0.nextRound } ?? (machine.candidates + turn.sendable) }
        switch turn.ending {
        case .committed:
            var started = 0
            var stillWaiting: [ValidJob] = []
            if let plan = turn.plan {
                (stillWaiting, started) = send(turn.answer, for: plan, by: admission, settled: &settled)
            }
            machine.turnEnded(.committed(waiting: stillWaiting, started: started, claimedCount: turn.claimed.count))
            stats.countClaimed(turn.claimed.count)
            session.succeeded()
        case .rolledBack(let failure):
            // Rolled back (the session is dropped with it): this turn's claim never happened, and its
            // jobs are someone else's to claim.
            if turn.plan?.probe != nil { breaker.releaseProbe() }
            let here = Set(turn.claimed.map(\.id))
            for job in turn.claimed { leases.release(job.lease) }
            settled.removeAll { here.contains($0.job.id) }
            machine.turnEnded(.rolledBack(claimed: here, waiting: waiting()))
            await session.failed(failure)
        case .mayHaveCommitted(let failure):
            // Any other failure once the COMMIT was sent may have committed: its jobs stay candidates,
            // and the next round's reservation tells (granted again: their own windows; or lost).
            if turn.plan?.probe != nil { breaker.releaseProbe() }
            machine.turnEnded(.mayHaveCommitted(waiting: waiting()))
            await session.failed(failure)
        }
        stats.setInFlight(machine.inFlight)
        // Counted here, once, as they go to the writer (a claim rolled back took its own out).
        stats.count(settled)
        writes.submit(settled)
    }

    /// One claim turn on the connection's thread, back to back: BEGIN and the claim, the triage of
    /// what it claimed, the plan, then the reservation with its COMMIT (or the COMMIT alone). Between
    /// the statements only pure work (and the breaker taking its probe): awaiting each statement was a
    /// hand-over to the connection's thread and back, ~0.1 ms each way on a busy two-core host, and at
    /// a few hundred jobs a second the next job waits for the turn in progress. It never throws: what
    /// it did, a failure included, is the loop's to apply.
    struct Turn: Sendable {
        var claimed: [ClaimedJob] = []
        /// Of `claimed`, the jobs triage would send.
        var sendable: [ValidJob] = []
        /// Triage's outcomes for the claimed jobs it would not send.
        var settled: [JobOutcome] = []
        var plan: Admission.Plan? = nil
        /// The COMMIT was sent (with the reservation, or alone): a failure from then on may have committed.
        var committing = false
        /// The reservation's verdicts (none when nothing was asked).
        var answer = ReserveSends.Answer()
        var failure: (any Error)? = nil

        /// How it ended: committed, rolled back for certain, or failed once its COMMIT was sent (may
        /// have committed).
        enum Ending {
            case committed
            case rolledBack(any Error)
            case mayHaveCommitted(any Error)
        }

        var ending: Ending {
            guard let failure else { return .committed }
            return !committing || ClaimLoop.rolledBack(failure) ? .rolledBack(failure) : .mayHaveCommitted(failure)
        }

        /// `claiming`: how many jobs to claim first (nil: none, only the candidates' reservation).
        static func run(
            worker: String, claiming limit: Int?, lease: Duration, candidates: [ValidJob], triage: Triage,
            admission: Admission, on db: PostgresConnection
        ) async -> Turn {
            do {
                return try await db.withSession { session in
                    var turn = Turn()
                    do {
                        if let limit {
                            turn.claimed = try session.begin(with: ClaimJobs(worker: worker, limit: limit, lease: lease))
                        }
                        for job in turn.claimed {
                            switch triage.decide(job) {
                            case .send(let valid): turn.sendable.append(valid)
                            case .settle(let outcome): turn.settled.append(outcome)
                            }
                        }
                        let plan = admission.plan(candidates + turn.sendable)
                        turn.plan = plan
                        // One chunk: its row locks are held until COMMIT, and more chunks would hold more,
                        // in no order across chunks. The rest get no verdict: asked next round.
                        let asked = Array(plan.batch.prefix(Admission.reservationChunk))
                        turn.committing = true
                        switch (limit, asked.isEmpty) {
                        case (.some, true): try session.commit()
                        case (.some, false): turn.answer = try admission.reserveAndCommit(asked, on: session)
                        // No claim, so no transaction is open: the reservation commits on its own.
                        case (nil, true): break
                        case (nil, false): turn.answer = try admission.reserveAlone(asked, on: session)
                        }
                    } catch {
                        turn.failure = error
                    }
                    return turn
                }
            } catch {
                // The connection was closed under us: nothing was sent.
                return Turn(failure: error)
            }
        }
    }

    /// Whether a failure once the COMMIT was sent says for certain that the transaction did not commit:
    /// COMMIT answered ROLLBACK, or the reservation sent with it failed on the server (PostgreSQL then
    /// skips the COMMIT). A lost connection says nothing: the COMMIT may have gone through.
    static func rolledBack(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        if error.sqlState == PostgresError.SQLState.inFailedTransaction { return true }
        return error.pipelineStep == 0 && error.sqlState != nil && !error.isConnectionProblem
    }

    /// The reservation's verdicts on `plan`'s batch (a job without one was not asked, or got no
    /// answer: it waits for the next round): the granted calls start, the rest are settled. Returns the
    /// jobs still awaiting their reservation and how many calls started. The half-open breaker's probe,
    /// if the plan took it, is handed back unless its call starts.
    private func send(
        _ answer: ReserveSends.Answer, for plan: Admission.Plan, by admission: Admission, settled: inout [JobOutcome]
    ) -> (waiting: [ValidJob], started: Int) {
        let verdicts = admission.apply(answer.verdicts, to: plan.batch)
        fraud.record(answer)
        // Its call starts now: the call's answer settles the probe (or the sender hands it back if a
        // pause holds the call back at its slot).
        let probeCall = plan.probe.flatMap { probe in verdicts.granted.contains { $0.job.id == probe } ? probe : nil }
        if plan.probe != nil, probeCall == nil { breaker.releaseProbe() }
        for job in verdicts.lost {
            // Rescued from under us (the lease ran out): no call, and no outcome of ours.
            leases.release(job.lease)
            logger.warning("job's lease passed on before its call; not sending it", metadata: ["job": "\(job.id)"])
        }
        settled += verdicts.settled
        sender.start(verdicts.granted, deciding: admission.triage, probe: probeCall)
        return (plan.nextRound + verdicts.unanswered, verdicts.granted.count)
    }
}

extension ClaimLoop {
    /// The last of the dispatcher's services, so the first to hear the shutdown: it drains (no new
    /// claims; calls in flight answered and their outcomes submitted, within the drain limit), then
    /// closes the event stream and finishes the write queue, which lets the writer stop once it is empty.
    package func run() async throws {
        let (events, writes) = (self.events, self.writes)
        await withGracefulShutdownHandler {
            var loop = self
            await loop.turns()
        } onGracefulShutdown: {
            events.send(.shutdownRequested)
        }
        events.close()
        writes.finish()
    }
}
