import Foundation
import Logging
import PostgresClient
import ServiceLifecycle
import Synchronization

/// The daemon: claims due jobs, validates them, calls GenAuth with at most `concurrency` calls in
/// flight, and writes every outcome back in batches. A swift-service-lifecycle `Service`: `run()`
/// returns after a graceful shutdown has drained the calls in flight.
///
/// Shape: one loop owns the main connection and does the claims and reservations, one statement at a
/// time; a writer on a second connection does the write-backs, so writing one batch of outcomes
/// overlaps with claiming the next (two PostgreSQL backends at work instead of one loop waiting on
/// each). Call completions (on the GenAuth client's event loop), the LISTEN connection and a ticker
/// only post results and wake-ups. While a write-back is running, more results pile up and go out
/// together in the next one, so batches grow with load by themselves.
public final class Dispatcher: Service, Sendable {
    public let config: DispatcherConfig
    public let identity: WorkerIdentity
    private let logger: Logger
    private let client: GenAuthClient
    private let backoff: Backoff
    private let mailbox = Mailbox()
    private let writes = WriteQueue()
    /// The jobs this process holds, with their claim tokens: what the heartbeat extends.
    private let leases = LeaseBook()
    private let breaker: CircuitBreaker
    private let notifier: SystemdNotifier
    private let metrics = DispatcherMetrics()

    public init(config: DispatcherConfig, logger: Logger, identity: WorkerIdentity,
                notifier: SystemdNotifier = SystemdNotifier()) throws {
        self.notifier = notifier
        self.config = config
        self.logger = logger
        self.identity = identity
        self.client = try GenAuthClient(config: config)
        self.backoff = Backoff(base: config.retryBaseDelay, maximum: config.retryMaxDelay)
        // A probe that neither answers nor is handed back within its call's timeout (and a margin) is lost.
        self.breaker = CircuitBreaker(threshold: config.breakerThreshold, coolDown: config.breakerCoolDown,
                                      probeTimeout: .milliseconds(Int64((config.requestTimeout + 5) * 1000)))
    }

    /// The cluster's rate schedule spaces calls at 90% of `rate_limit`: a call leaves up to a tenth of a
    /// second after its slot when this host's event loop is busy, and calls of two daemons delayed
    /// that way must still fit in GenAuth's second.
    static let rateHeadroom = 0.9

    /// How long a few free call slots wait for more before they are claimed for (see the loop).
    static let claimLinger = Duration.milliseconds(2)
    /// How long the writer waits for a small batch of outcomes to grow before writing it.
    static let writeLinger = Duration.milliseconds(1)

    /// How long a shutdown waits for calls in flight before it stops waiting (their jobs stay leased
    /// and are rescued when the lease runs out).
    private var shutdownGrace: Duration { .milliseconds(Int64(config.shutdownGrace * 1000)) }

    /// Connects and checks the schema; throws `StartupError` when the daemon cannot work at all.
    public static func checkDatabase(_ config: DispatcherConfig, requiredSchemaVersion: Int) async throws {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(config.databaseURL)
        } catch {
            throw StartupError(code: .databaseUnavailable, message: "cannot connect to PostgreSQL: \(error)")
        }
        let version: Int?
        do {
            version = try await Migrator.currentVersion(connection)
            await connection.close()
        } catch {
            await connection.close()
            throw StartupError(code: .databaseUnavailable, message: "cannot read the schema version: \(error)")
        }
        guard let version, version >= requiredSchemaVersion else {
            throw StartupError(code: .databaseUnavailable, message:
                "the database schema is at version \(version.map(String.init) ?? "none"), this daemon needs \(requiredSchemaVersion): run `sms-dispatcher migrate`")
        }
    }

    public func run() async throws {
        let logger = {
            var logger = self.logger
            logger[metadataKey: "worker"] = "\(identity.id)"
            return logger
        }()
        let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let mailbox = self.mailbox
        let writes = self.writes
        logger.notice("dispatcher started", metadata: [
            "concurrency": "\(config.concurrency)", "poll_interval": "\(config.pollInterval)",
            "genauth_host": "\(config.genauthHost)",
        ])
        // Start-up checks (database, schema version, GenAuth) ran before run(): ready now.
        notifier.ready(status: "dispatching as \(identity.id), up to \(config.concurrency) calls in flight")

        // The dispatch loop's connection; kept out here so the worker row can be removed once every
        // task, the heartbeat included, has stopped (else a last heartbeat could re-create it).
        var db: PostgresConnection? = nil
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.listen(wake: wake, logger: logger) }
                group.addTask { await self.tick(wake: wake) }
                group.addTask { await self.heartbeat(logger: logger) }
                group.addTask { await self.writeBack(wakeLoop: wake, logger: logger) }
                group.addTask { await self.rescuer(logger: logger) }
                if self.config.retentionDays > 0 { group.addTask { await self.retention(logger: logger) } }

                var outage = OutageTracker(what: "database", logger: logger)
                // Outcomes decided in this round, handed to the writer together at its end.
                var unwritten: [JobOutcome] = []
                var inFlight = 0
                var shutdownStarted: ContinuousClock.Instant? = nil
                // Claimed and valid, not yet through the throttle (kept across a database outage).
                var awaitingReservation: [ClaimedJob] = []
                var lastClaim = ContinuousClock.now - .seconds(1)
                let delayedWake = DelayedWake()

                for await _ in wakeups {
                    // The ticker wakes this loop every poll interval: if it stops coming round, the
                    // watchdog goes hungry and systemd restarts the daemon.
                    self.notifier.watchdog()
                    inFlight -= mailbox.takeFinishedCalls()
                    mailbox.setInFlight(inFlight)
                    defer {
                        writes.submit(unwritten)
                        unwritten.removeAll(keepingCapacity: true)
                    }

                    if mailbox.isShuttingDown, shutdownStarted == nil {
                        shutdownStarted = .now
                        logger.notice("shutting down: no new claims", metadata: ["in_flight": "\(inFlight)"])
                    }

                    do {
                        if let started = shutdownStarted {
                            // Claimed but never sent: back to pending at once, no attempt used.
                            if !awaitingReservation.isEmpty {
                                unwritten += awaitingReservation.map {
                                    JobOutcome(job: $0.lease, state: .pending, message: "released unsent at daemon shutdown", retryIn: 0)
                                }
                                awaitingReservation = []
                                wake.yield()
                                continue
                            }
                            // Done when every call has answered and the writer has written every outcome.
                            if (inFlight == 0 && writes.unsettled == 0) || ContinuousClock.now - started > self.shutdownGrace { break }
                            continue
                        }
                        if db == nil {
                            db = try await self.connect(outage: &outage)
                            // A reconnect waits up to 10 s of backoff and 10 s to connect, and each
                            // statement up to its timeout: fed after each, the watchdog (30 s) only
                            // starves when the loop itself is stuck.
                            self.notifier.watchdog()
                        }
                        guard let connection = db else { continue }
                        // The job holding the half-open breaker's probe, until its call starts.
                        var probeJob: Int64? = nil
                        defer { if probeJob != nil { self.breaker.releaseProbe() } }

                        var candidates = awaitingReservation
                        // Outcomes not yet on their rows hold their jobs too: while the writer is a full
                        // round behind (a slow or unreachable database), claim nothing more.
                        let free = writes.unsettled >= self.config.concurrency
                            ? 0 : self.config.concurrency - inFlight - candidates.count
                        var claimedFullBatch = false
                        // Under load, calls finish one by one and each wakes this loop: claiming each
                        // single free slot would cost a statement per job. A few slots wait up to
                        // `claimLinger` for company instead; a quiet queue (many free slots) claims at once.
                        let lingering = free > 0 && free < max(1, self.config.concurrency / 4)
                            && ContinuousClock.now - lastClaim < Self.claimLinger
                        if lingering, delayedWake.arm() {
                            group.addTask {
                                try? await Task.sleep(for: Self.claimLinger)
                                delayedWake.disarm()
                                wake.yield()
                            }
                        }
                        if free > 0 && !lingering {
                            lastClaim = .now
                            let claimed = try await JobStore.claim(
                                connection, worker: self.identity.id, limit: free, lease: self.config.leaseDuration)
                            claimedFullBatch = claimed.count == free
                            self.leases.hold(claimed.map(\.lease))
                            self.notifier.watchdog()
                            mailbox.countClaimed(claimed.count)
                            for job in claimed {
                                if let decided = self.decideWithoutCalling(job) {
                                    unwritten.append(decided)
                                    mailbox.count(decided)
                                } else {
                                    candidates.append(self.applyingChannelRules(job))
                                }
                            }
                        }

                        // One job per phone and channel asks for the slot; another in the same batch
                        // waits a round and is then deferred properly by the throttle.
                        var seen = Set<String>()
                        var batch: [ClaimedJob] = []
                        var nextRound: [ClaimedJob] = []
                        for job in candidates {
                            if seen.insert(job.phoneKey + "|" + job.channel).inserted { batch.append(job) } else { nextRound.append(job) }
                        }
                        // While GenAuth is down (breaker open) jobs wait, unreserved and with no attempt used.
                        switch self.breaker.admit(batch.count) {
                        case .all:
                            break
                        case .probe(let count, let retryIn):
                            probeJob = batch.first?.id
                            for job in batch.dropFirst(count) {
                                let outcome = self.deferral(job, until: job.now + retryIn, reason: self.breakerReason)
                                unwritten.append(outcome)
                                mailbox.count(outcome)
                            }
                            batch = Array(batch.prefix(count))
                        case .none(let retryIn):
                            for job in batch {
                                let outcome = self.deferral(job, until: job.now + retryIn, reason: self.breakerReason)
                                unwritten.append(outcome)
                                mailbox.count(outcome)
                            }
                            batch = []
                        }
                        candidates = batch + nextRound
                        // Until the reservation is through, every candidate is still waiting for it.
                        awaitingReservation = candidates
                        let verdicts = try await JobStore.reserve(
                            connection, jobs: batch, window: self.config.throttleWindow,
                            hourCap: self.config.capPerPhoneHour, dayCap: self.config.capPerPhoneDay,
                            rate: self.config.rateLimit * Self.rateHeadroom)
                        outage.recovered()
                        awaitingReservation = nextRound
                        var granted: [(job: ClaimedJob, slot: Duration)] = []
                        for job in batch {
                            switch verdicts[job.id] {
                            case .granted(let slot):
                                granted.append((job, slot))
                                // Its call starts now: the call's answer settles the probe.
                                if job.id == probeJob { probeJob = nil }
                            case .lost:
                                // Rescued from under us (the lease ran out): no call, and no outcome of ours.
                                self.leases.release(job.lease)
                                logger.warning("job's lease passed on before its call; not sending it", metadata: ["job": "\(job.id)"])
                            case .deferred(let until):
                                let outcome = self.deferral(job, until: until)
                                unwritten.append(outcome)
                                mailbox.count(outcome)
                            case .capped(let reason):
                                let outcome = JobOutcome(job: job.lease, state: .rejected, message: reason)
                                unwritten.append(outcome)
                                mailbox.count(outcome)
                            case nil:
                                awaitingReservation.append(job)
                            }
                        }
                        inFlight += granted.count
                        self.startCalls(granted, wake: wake, logger: logger)
                        mailbox.setInFlight(inFlight)
                        // A full batch means more may be due: go round again at once. So do jobs waiting
                        // for a reservation.
                        if claimedFullBatch || !awaitingReservation.isEmpty { wake.yield() }
                    } catch {
                        // Whatever the database said (gone, read-only, full, cancelled, a lock timeout):
                        // nothing claimed is lost (candidates wait in `awaitingReservation`), the outage
                        // is logged once, and a fresh session (maybe on a new primary) is tried with backoff.
                        outage.failed(error)
                        if let connection = db { await connection.close() }
                        db = nil
                        if let started = shutdownStarted, ContinuousClock.now - started > self.shutdownGrace { break }
                    }
                }
                if inFlight > 0 {
                    logger.warning("stopping with calls in flight after the grace period; their jobs stay leased until rescued",
                                   metadata: ["in_flight": "\(inFlight)"])
                }
                wake.finish()
                writes.finish()
                group.cancelAll()
            }
        } onGracefulShutdown: { [notifier] in
            notifier.stopping(status: "draining: no new claims, finishing calls in flight")
            mailbox.beginShutdown()
            wake.yield()
        }
        if db == nil { db = try? await PostgresConnection.connect(config.databaseURL) }
        if let connection = db {
            do {
                try await JobStore.unregister(connection, worker: identity)
            } catch {
                logger.warning("could not remove this worker's row from sms.workers", metadata: ["error": "\(error)"])
            }
            await connection.close()
        }
        await client.shutdown()
        logger.notice("dispatcher stopped")
    }

    // MARK: - Deciding and sending

    /// Jobs that must not be sent: expired, invalid, against a channel or country rule, or superseded
    /// by a newer job for the same phone and channel. None of these reaches GenAuth.
    func decideWithoutCalling(_ job: ClaimedJob) -> JobOutcome? {
        let channel: Channel
        switch JobValidation.validateChannel(job.channel) {
        case .failure(let error): return JobOutcome(job: job.lease, state: .rejected, message: error.message)
        case .success(let valid): channel = valid
        }
        let rule = config.rule(for: channel)
        if let expiresAt = job.expiresAt, expiresAt <= job.now {
            return JobOutcome(job: job.lease, state: .expired, message: "expires_at passed before the SMS could be sent")
        }
        if rule.ttl > 0, job.createdAt + rule.ttl <= job.now {
            return JobOutcome(job: job.lease, state: .expired, message:
                "older than \(channel.rawValue)'s TTL of \(Int(rule.ttl)) s (channels.\(channel.rawValue).ttl) before it could be sent")
        }
        let phone: ValidatedPhone
        switch JobValidation.validatePhone(number: job.phoneNumber, countryCode: job.phoneCountryCode) {
        case .failure(let error): return JobOutcome(job: job.lease, state: .rejected, message: error.message)
        case .success(let valid): phone = valid
        }
        if !rule.enabled {
            return JobOutcome(job: job.lease, state: .rejected,
                              message: "channel \(channel.rawValue) is disabled by configuration (channels.\(channel.rawValue).enabled = false)")
        }
        if let code = phone.countryCode {
            if !config.international {
                return JobOutcome(job: job.lease, state: .rejected, message:
                    "international numbers are not enabled (countries.international = false); \(code) is outside mainland China")
            }
            if !config.allowedCountryCodes.isEmpty && !config.allowedCountryCodes.contains(code) {
                return JobOutcome(job: job.lease, state: .rejected, message:
                    "country code \(code) is not allowed (countries.allow = \(config.allowedCountryCodes.joined(separator: ", ")))")
            }
        }
        if rule.coalesce, let newer = job.newerJob {
            return JobOutcome(job: job.lease, state: .superseded,
                              message: "superseded by job \(newer), a newer request for the same phone and channel")
        }
        let maxAttempts = applyingChannelRules(job).maxAttempts
        if job.attempts >= maxAttempts {
            return JobOutcome(job: job.lease, state: .failed,
                              message: "attempts exhausted (\(job.attempts) of \(maxAttempts)) before this claim")
        }
        return nil
    }

    /// The job with its channel's cap on attempts applied.
    func applyingChannelRules(_ job: ClaimedJob) -> ClaimedJob {
        var job = job
        if let channel = Channel(rawValue: job.channel), let cap = config.rule(for: channel).maxAttempts {
            job.maxAttempts = min(job.maxAttempts, cap)
        }
        return job
    }

    /// Back to pending until `until` (epoch, database clock), no attempt used; or `expired` if the job's
    /// deadline comes first. `reason` says why, for the message.
    func deferral(_ job: ClaimedJob, until: Double, reason: String? = nil) -> JobOutcome {
        let ttl = Channel(rawValue: job.channel).map { config.rule(for: $0).ttl } ?? 0
        let when = Date(timeIntervalSince1970: until).formatted(.iso8601)
        let reason = reason ?? "one SMS per phone per channel every \(config.throttleWindow) s (throttle.window)"
        if let deadline = job.deadline(ttl: ttl), until >= deadline {
            return JobOutcome(job: job.lease, state: .expired, message:
                "deferred until \(when) (\(reason)), which is after its deadline \(Date(timeIntervalSince1970: deadline).formatted(.iso8601))")
        }
        return JobOutcome(job: job.lease, state: .pending, message: "deferred: \(reason); next try at \(when)",
                          deferredUntil: until)
    }

    private var breakerReason: String {
        "GenAuth is failing: circuit breaker open after \(config.breakerThreshold) consecutive transient failures (breaker.*)"
    }

    /// Starts the calls for `jobs` (granted by the throttle, each at its slot in the cluster's rate
    /// schedule) without waiting. Each call's outcome goes to the writer from the HTTP client's loop,
    /// and the dispatch loop is woken to count it.
    func startCalls(_ jobs: [(job: ClaimedJob, slot: Duration)], wake: AsyncStream<Void>.Continuation, logger: Logger) {
        guard !jobs.isEmpty else { return }
        let writes = self.writes
        let mailbox = self.mailbox
        let now = ContinuousClock.now
        client.start(jobs.map { job, slot in
            // decideWithoutCalling validated the job already; only the +86 normalisation is left to do.
            let request = SendSMSRequest(channel: job.channel, phoneNumber: job.phoneNumber,
                                         phoneCountryCode: JobValidation.sentCountryCode(job.phoneCountryCode))
            let started = now + slot
            return GenAuthClient.PendingCall(request: request, notBefore: slot > .zero ? started : nil) { result in
                let outcome = self.finishCall(job, result: result, started: started, finished: .now, logger: logger)
                writes.submit(outcome)
                mailbox.callFinished()
                wake.yield()
            }
        })
    }

    /// One call's result, recorded (metrics, breaker) and turned into the job's outcome.
    func finishCall(_ job: ClaimedJob, result: CallResult, started: ContinuousClock.Instant,
                    finished: ContinuousClock.Instant, logger: Logger) -> JobOutcome {
        metrics.call(result, seconds: max(0, (finished - started).seconds))
        var outcome = Self.outcome(for: job, result: result, started: started, finished: finished, backoff: backoff,
                                   policy: config.deliveryPolicy, window: config.throttleWindow)
        if let phase = breaker.record(isServerFault: result.isServerFault) {
            metrics.breaker(phase)
            logger.log(level: phase == .open ? .error : .notice, "GenAuth circuit breaker \(phase.rawValue)",
                       metadata: ["threshold": "\(config.breakerThreshold)", "times_opened": "\(breaker.timesOpened)"])
        }
        outcome.coalesce = Channel(rawValue: job.channel).map { config.rule(for: $0).coalesce } ?? false
        logger.debug("job attempt", metadata: [
            "job": "\(job.id)", "phone": "\(maskPhone(job.phoneNumber))", "channel": "\(job.channel)",
            "attempt": "\(job.attempts + 1)", "state": "\(outcome.state.rawValue)",
            "status_code": "\(outcome.call?.statusCode.map(String.init) ?? "-")",
            "http_status": "\(outcome.call?.httpStatus.map(String.init) ?? "-")",
        ])
        mailbox.count(outcome)
        return outcome
    }

    /// Turns one call's result into the job's next state. `window`: the throttle window, seconds.
    static func outcome(for job: ClaimedJob, result: CallResult, started: ContinuousClock.Instant,
                        finished: ContinuousClock.Instant, backoff: Backoff, policy: DeliveryPolicy = .atLeastOnce,
                        window: Int = 60) -> JobOutcome {
        var call = CallRecord(startedAt: started, finishedAt: finished)
        switch result {
        case .answered(let httpStatus, let body, _):
            call.httpStatus = httpStatus
            call.statusCode = body?.statusCode
            call.apiCode = body?.apiCode
            call.requestID = body?.requestId
            call.message = body?.message ?? (body == nil ? "HTTP \(httpStatus) without a GenAuth JSON body" : nil)
        case .unanswered(let reason), .notSent(let reason):
            call.message = reason
        }
        let attempt = job.attempts + 1
        // An earlier call of this job may have gone out unseen (a crash, or no answer). GenAuth now says
        // this phone already had an SMS on this channel within the window, and no other job of ours can
        // have sent it (the cluster-wide throttle held the slot for this job): that call went through.
        // Sending again would be a duplicate.
        if job.uncertain, case .answered(200, let body?, _) = result, body.statusCode == 429 {
            return JobOutcome(job: job.lease, state: .sent, message:
                "presumed sent: an earlier call whose answer never came went through (GenAuth: \(body.message ?? "429"))",
                call: call)
        }
        // Uncertain from now on if this call was written and not answered, or still from an earlier one.
        let uncertain: Bool
        if case .unanswered = result { uncertain = true } else { uncertain = job.uncertain }
        if case .unanswered = result {
            if policy == .atMostOnce {
                return JobOutcome(job: job.lease, state: .failed, message:
                    "delivery unknown: \(call.message ?? "no answer"); not retried (delivery.policy = at-most-once)",
                    call: call, uncertain: true)
            }
            if attempt >= job.maxAttempts {
                return JobOutcome(job: job.lease, state: .failed, message:
                    "delivery unknown: attempts exhausted (\(attempt) of \(job.maxAttempts)) and GenAuth never answered the last (\(call.message ?? "no answer")); the SMS may have been delivered",
                    call: call, uncertain: true)
            }
        }
        switch Classification.classify(result) {
        case .sent:
            return JobOutcome(job: job.lease, state: .sent, message: call.message, call: call)
        case .permanentFailure:
            return JobOutcome(job: job.lease, state: .failed, message: call.message, call: call)
        case .transientFailure(let retryAfter):
            if attempt >= job.maxAttempts {
                return JobOutcome(job: job.lease, state: .failed,
                                  message: "attempts exhausted (\(attempt) of \(job.maxAttempts)); last: \(call.message ?? "no message")",
                                  call: call, uncertain: uncertain)
            }
            var delay = backoff.delay(afterAttempt: attempt, retryAfter: retryAfter)
            if uncertain {
                // The retry must reach GenAuth while its window for the unseen call is still open, so
                // that a "too frequent" answer can prove that call went out (and nothing goes out twice).
                let callSeconds = max(0, (finished - started).seconds)
                delay = min(delay, max(0.5, (Double(window) - callSeconds) / 2))
            }
            return JobOutcome(job: job.lease, state: .pending, message: call.message, call: call, retryIn: delay,
                              uncertain: uncertain)
        }
    }

    // MARK: - Database

    /// Every wait on the database is bounded, so a silent peer or an operator's open transaction cannot
    /// hold a loop past systemd's watchdog: statements end after a third of a lease (at most 10 s; the
    /// heartbeat must get through well within one), lock waits after half of that, TCP keepalives and
    /// `tcp_user_timeout` (set by the connection) notice a peer that vanished.
    var sessionSettings: SessionSettings {
        let statement = min(10, max(1, config.leaseDuration / 3))
        return SessionSettings(statementTimeout: .milliseconds(Int64(statement * 1000)),
                               lockTimeout: .milliseconds(Int64(statement * 500)),
                               idleInTransactionTimeout: .seconds(60))
    }

    private func connect(outage: inout OutageTracker) async throws -> PostgresConnection? {
        if let wait = outage.nextRetryDelay { try? await Task.sleep(for: wait) }
        do {
            return try await PostgresConnection.connect(config.databaseURL, applicationName: "sms-dispatcher \(identity.id)",
                                                        session: sessionSettings)
        } catch let error as PostgresError {
            outage.failed(error)
            return nil
        }
    }

    /// The writer: takes whatever outcomes have piled up and writes them in one batch, on its own
    /// connection. Outcomes survive any database failure in memory (gone, read-only, full, slow) and
    /// go out once it accepts them again. Ends when the queue is finished and empty (after the drain),
    /// or when cancelled (grace period over).
    private func writeBack(wakeLoop: AsyncStream<Void>.Continuation, logger: Logger) async {
        var outage = OutageTracker(what: "write-back", logger: logger)
        var db: PostgresConnection? = nil
        var pending: [JobOutcome] = []
        while !Task.isCancelled {
            var finished = false
            if pending.isEmpty {
                (pending, finished) = await writes.next()
            } else {
                // Left over from a failed write: again, with whatever has come since, without waiting.
                pending += writes.takeNow()
            }
            // Under load outcomes arrive one by one; a moment's wait turns many one-row statements
            // into one. Nobody waits for this (the SMS has gone out; only the row is not updated yet).
            if !finished, !pending.isEmpty, pending.count < max(1, config.concurrency / 2) {
                try? await Task.sleep(for: Self.writeLinger)
                pending += writes.takeNow()
            }
            if pending.isEmpty {
                if finished { break }
                continue
            }
            let taken = pending.count
            if db == nil { db = try? await connect(outage: &outage) }
            if let connection = db {
                var settled: [JobOutcome] = []
                do {
                    try await write(&pending, settled: &settled, to: connection, logger: logger)
                    outage.recovered()
                    writes.stuckSince = nil
                } catch {
                    if writes.stuckSince == nil { writes.stuckSince = .now }
                    outage.failed(error)
                    await connection.close()
                    db = nil
                }
                // Written or fenced out: no longer this process's to hold (even when a later row failed).
                for outcome in settled { leases.release(outcome.job) }
            }
            writes.settled(taken - pending.count)
            // The loop waits for an idle writer before it stops; and a write may have freed jobs to claim.
            wakeLoop.yield()
        }
        if writes.unsettled > 0 {
            logger.error("stopping with outcomes not written; their leases will expire and the jobs be rescued",
                         metadata: ["count": "\(writes.unsettled)"])
        }
        await db?.close()
    }

    /// Writes outcomes: those settled (written, or fenced out because the job is no longer under their
    /// claim) move from `unwritten` to `settled`; what is left in `unwritten` is to be tried again.
    /// Only a data error (SQLSTATE class 22 or 23: a value one row cannot hold) is settled row by row;
    /// such a row is written without GenAuth's values and says why (a sent SMS stays `sent`). Any
    /// other error (the connection, read-only, disk full, a timeout, a deadlock) throws with every
    /// outcome not yet written kept.
    private func write(_ unwritten: inout [JobOutcome], settled: inout [JobOutcome], to db: PostgresConnection,
                       logger: Logger) async throws {
        do {
            let updated = try await JobStore.complete(db, worker: identity.id, outcomes: unwritten,
                                                      throttleWindow: config.throttleWindow)
            if updated < unwritten.count {
                logger.warning("some outcomes were not written: those jobs were no longer under this claim",
                               metadata: ["fenced_out": "\(unwritten.count - updated)"])
            }
            settled += unwritten
            unwritten.removeAll(keepingCapacity: true)
        } catch let error as PostgresError where error.disposition == .data {
            logger.error("batch write-back refused by a data error; writing row by row", metadata: ["error": "\(error)"])
            while let outcome = unwritten.first {
                do {
                    try await JobStore.complete(db, worker: identity.id, outcomes: [outcome], throttleWindow: config.throttleWindow)
                } catch let rowError as PostgresError where rowError.disposition == .data {
                    logger.error("write-back refused for a job; writing it without GenAuth's values", metadata: [
                        "job": "\(outcome.jobID)", "error": "\(rowError)"])
                    do {
                        try await JobStore.complete(db, worker: identity.id, outcomes: [outcome.storable(after: rowError.message)],
                                                    throttleWindow: config.throttleWindow)
                    } catch let again as PostgresError where again.disposition == .data {
                        // Nothing of GenAuth's is left in it; its lease runs out and the rescue settles it.
                        logger.critical("write-back refused even without GenAuth's values; leaving the job to lease rescue",
                                        metadata: ["job": "\(outcome.jobID)", "error": "\(again)"])
                    }
                }
                settled.append(unwritten.removeFirst())
            }
        }
    }

    // MARK: - Background loops

    /// Wakes the loop on `NOTIFY sms_jobs` (sent by the insert trigger).
    private func listen(wake: AsyncStream<Void>.Continuation, logger: Logger) async {
        var outage = OutageTracker(what: "LISTEN connection", logger: logger, quiet: true)
        let wait = Duration.milliseconds(Int64(min(config.pollInterval, 1) * 1000))
        while !Task.isCancelled && !mailbox.isShuttingDown {
            guard let connection = try? await connect(outage: &outage) else { continue }
            do {
                try await connection.listen("sms_jobs")
                outage.recovered()
                wake.yield()  // anything inserted while we were not listening
                while !Task.isCancelled && !mailbox.isShuttingDown {
                    if !(try await connection.waitForNotifications(timeout: wait)).isEmpty { wake.yield() }
                }
            } catch {
                outage.failed(error)
            }
            await connection.close()
        }
    }

    /// Polling fallback, and the clock that lets a draining shutdown notice its deadline.
    private func tick(wake: AsyncStream<Void>.Continuation) async {
        let interval = Duration.milliseconds(Int64(config.pollInterval * 1000))
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            wake.yield()
        }
    }

    /// Keeps the worker row fresh and the leases of the jobs this process holds extended.
    private func heartbeat(logger: Logger) async {
        var outage = OutageTracker(what: "heartbeat", logger: logger)
        let interval = Duration.milliseconds(Int64(config.heartbeatInterval * 1000))
        var publishedSettings = false
        var warnedSharedID = false
        var db: PostgresConnection? = nil
        // Runs until cancelled, which is after the drain: leases stay extended while calls finish.
        while !Task.isCancelled {
            if db == nil { db = try? await connect(outage: &outage) }
            if let connection = db {
                do {
                    // Before the first heartbeat (so a worker row means the settings are out): the
                    // channels' default priorities, for the insert trigger.
                    if !publishedSettings {
                        try await JobStore.publishChannelSettings(connection, rules: config.channelRules)
                        publishedSettings = true
                    }
                    let snapshot = mailbox.snapshot()
                    let stuck = writes.stuckSince.map { (ContinuousClock.now - $0).seconds }
                    let beat = try await JobStore.heartbeat(
                        connection, worker: identity, version: SMSDispatcherVersion.current,
                        inFlight: snapshot.inFlight, counters: snapshot.counters, held: leases.held(),
                        unwritten: writes.unsettled, oldestUnwritten: stuck, lease: config.leaseDuration,
                        staleAfter: max(config.heartbeatInterval * 3, 10))
                    if beat.sharingID > 0, !warnedSharedID {
                        warnedSharedID = true
                        logger.warning("another live daemon uses this worker.id; each still holds only its own jobs, but give every daemon its own id",
                                       metadata: ["others": "\(beat.sharingID)"])
                    }
                    if config.metricsListen != nil {
                        metrics.queueDepth.record(try await JobStore.dueJobs(connection))
                        metrics.breaker(breaker.phase)
                    }
                    let c = snapshot.counters
                    let writer = stuck.map { String(format: "; write-back failing for %.0f s (%d outcomes waiting)", $0, writes.unsettled) } ?? ""
                    notifier.status("in flight \(snapshot.inFlight); since start: sent \(c.sent), failed \(c.failed), retried \(c.retried), rejected \(c.rejected), expired \(c.expired), deferred \(c.deferred); breaker \(breaker.phase.rawValue); \(beat.live) daemon(s) live\(writer)")
                    outage.recovered()
                } catch {
                    outage.failed(error)
                    await connection.close()
                    db = nil
                }
            }
            try? await Task.sleep(for: interval)
        }
        await db?.close()
    }

    /// The rescuer: returns jobs whose lease ran out (their holder died, hung, or lost the database
    /// longer than a lease) to the queue by the delivery policy. Any daemon may do it; the row lock
    /// makes each rescue happen once.
    private func rescuer(logger: Logger) async {
        var outage = OutageTracker(what: "lease rescue", logger: logger, quiet: true)
        let interval = Duration.milliseconds(Int64(config.rescueInterval * 1000))
        var db: PostgresConnection? = nil
        while !Task.isCancelled && !mailbox.isShuttingDown {
            if db == nil { db = try? await connect(outage: &outage) }
            if let connection = db {
                do {
                    let rescued = try await JobStore.rescueExpiredLeases(connection, policy: config.deliveryPolicy)
                    if !rescued.isEmpty {
                        logger.warning("rescued jobs whose lease expired", metadata: [
                            "count": "\(rescued.count)", "failed": "\(rescued.filter { $0.state == .failed }.count)",
                            "policy": "\(config.deliveryPolicy.rawValue)",
                        ])
                    }
                    outage.recovered()
                } catch {
                    outage.failed(error)
                    await connection.close()
                    db = nil
                }
            }
            try? await Task.sleep(for: interval)
        }
        await db?.close()
    }

    /// Retention, in its own task so a long delete never delays a heartbeat: each run deletes for at
    /// most `retentionBudget`; a run that ran out of time with more to delete is followed by the next
    /// one at once, so retention keeps pace with any insert rate the database can delete at.
    private func retention(logger: Logger) async {
        var outage = OutageTracker(what: "retention", logger: logger, quiet: true)
        let interval = Duration.milliseconds(Int64(config.retentionInterval * 1000))
        var db: PostgresConnection? = nil
        // The first run waits one interval, so a restart loop does not hammer the table.
        var wait = interval
        while !Task.isCancelled && !mailbox.isShuttingDown {
            try? await Task.sleep(for: wait)
            if Task.isCancelled || mailbox.isShuttingDown { break }
            wait = interval
            if db == nil { db = try? await connect(outage: &outage) }
            guard let connection = db else { continue }
            do {
                if let run = try await JobStore.applyRetention(
                    connection, days: config.retentionDays, batch: config.retentionBatchSize, budget: Self.retentionBudget) {
                    if run.deleted > 0 {
                        logger.notice("retention deleted finished jobs", metadata: [
                            "deleted": "\(run.deleted)", "older_than_days": "\(config.retentionDays)", "more": "\(run.more)",
                        ])
                    }
                    // Behind: go again after a breath rather than a whole interval.
                    if run.more { wait = .seconds(1) }
                }
                outage.recovered()
            } catch {
                outage.failed(error)
                await connection.close()
                db = nil
            }
        }
        await db?.close()
    }

    /// How long one retention run may delete for.
    static let retentionBudget = Duration.seconds(5)
}

/// What call completions and the shutdown handler hand to the dispatch loop, behind one lock.
final class Mailbox: Sendable {
    private struct State {
        var finishedCalls = 0
        var shuttingDown = false
        var inFlight = 0
        var counters = WorkerCounters()
    }
    private let state = Mutex(State())
    private let metrics = DispatcherMetrics()

    func callFinished() { state.withLock { $0.finishedCalls += 1 } }

    func takeFinishedCalls() -> Int {
        state.withLock { state in
            defer { state.finishedCalls = 0 }
            return state.finishedCalls
        }
    }

    func count(_ outcome: JobOutcome) {
        state.withLock { $0.counters.count(outcome) }
        metrics.outcome(outcome)
    }
    func countClaimed(_ n: Int) {
        state.withLock { $0.counters.claimed += n }
        metrics.claimed.increment(by: n)
    }
    func setInFlight(_ n: Int) {
        state.withLock { $0.inFlight = n }
        metrics.inFlight.record(n)
    }
    func beginShutdown() { state.withLock { $0.shuttingDown = true } }
    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }
    func snapshot() -> (inFlight: Int, counters: WorkerCounters) { state.withLock { ($0.inFlight, $0.counters) } }
}

/// Outcomes on their way to their rows. The writer takes them (`next()` waits until there are some,
/// or the queue is finished) and says how many it has written (`settled`); `unsettled` counts those
/// submitted and not yet written, wherever they are.
final class WriteQueue: Sendable {
    private struct State {
        var stuckSince: ContinuousClock.Instant? = nil
        var outcomes: [JobOutcome] = []
        /// Taken by the writer and not yet written.
        var taken = 0
        var finished = false
        var waiter: CheckedContinuation<Void, Never>? = nil
    }
    private let state = Mutex(State())

    func submit(_ outcome: JobOutcome) { submit(CollectionOfOne(outcome)) }

    func submit<C: Collection>(_ outcomes: C) where C.Element == JobOutcome {
        guard !outcomes.isEmpty else { return }
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.outcomes.append(contentsOf: outcomes)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Everything submitted so far, once there is something (or the queue was finished).
    func next() async -> (outcomes: [JobOutcome], finished: Bool) {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if !state.outcomes.isEmpty || state.finished { return true }
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        let finished = state.withLock { $0.finished }
        return (takeNow(), finished)
    }

    /// Everything submitted so far, without waiting.
    func takeNow() -> [JobOutcome] {
        state.withLock { state in
            defer { state.outcomes = [] }
            state.taken += state.outcomes.count
            return state.outcomes
        }
    }

    func settled(_ count: Int) { state.withLock { $0.taken -= count } }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Submitted and not yet written (or fenced out).
    var unsettled: Int { state.withLock { $0.outcomes.count + $0.taken } }

    /// Since when writes have been failing (nil while they succeed): shown in `sms.workers` and the
    /// systemd status, so a wedged writer is visible.
    var stuckSince: ContinuousClock.Instant? {
        get { state.withLock { $0.stuckSince } }
        set { state.withLock { $0.stuckSince = newValue } }
    }
}

/// At most one delayed wake-up of the dispatch loop pending at a time.
final class DelayedWake: Sendable {
    private let isArmed = Mutex(false)
    /// Arms it; false if it was armed already (a wake-up is on its way).
    func arm() -> Bool {
        isArmed.withLock { armed in
            defer { armed = true }
            return !armed
        }
    }
    func disarm() { isArmed.withLock { $0 = false } }
}

/// Logs an outage once when it starts and once when it ends (not once per retry), and spaces the
/// reconnect attempts with a capped exponential backoff.
struct OutageTracker {
    let what: String
    let logger: Logger
    var quiet = false
    private(set) var failures = 0
    private var since: ContinuousClock.Instant? = nil

    init(what: String, logger: Logger, quiet: Bool = false) {
        self.what = what
        self.logger = logger
        self.quiet = quiet
    }

    var nextRetryDelay: Duration? {
        guard failures > 0 else { return nil }
        let milliseconds = min(10_000, 250 * (1 << min(failures - 1, 6)))
        return .milliseconds(milliseconds)
    }

    mutating func failed(_ error: any Error) {
        failures += 1
        if since == nil {
            since = .now
            let level: Logger.Level = quiet ? .warning : .error
            logger.log(level: level, "\(what) unavailable; reconnecting with backoff", metadata: ["error": "\(error)"])
        }
    }

    mutating func recovered() {
        if let since {
            logger.notice("\(what) back", metadata: ["after_s": "\(String(format: "%.1f", (ContinuousClock.now - since).seconds))", "failures": "\(failures)"])
        }
        since = nil
        failures = 0
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Start-up failures, mapped to exit codes by the command line.
public struct StartupError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private let name: String
        private init(_ name: String) { self.name = name }
        public static let databaseUnavailable = Code("databaseUnavailable")
        public static let apiUnavailable = Code("apiUnavailable")
    }
    public let code: Code
    public let message: String
    public var description: String { message }
}
