import GenAuth
import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// The daemon: claims due jobs, triages them, calls GenAuth with at most `concurrency` calls in
/// flight, and writes every outcome back in batches. A swift-service-lifecycle `Service`: `run()`
/// returns after a graceful shutdown has drained the calls in flight.
///
/// It only wires the engine's services together, each with its own job and (where it talks to
/// PostgreSQL) its own session, as River's client wires its producer, completer, rescuer and
/// notifier:
///
///     WakeSource ──events──▶ ClaimLoop ──▶ Triage ──▶ Admission ──▶ CallSender ──▶ GenAuth
///                               ▲                                       │ outcome
///                               └────────events──── OutcomeWriter ◀─────┘ (WriteQueue)
///     HeartbeatService (worker row, leases, status) · LeaseRescuer · RetentionService
package final class Dispatcher: Service, Sendable {
    package let configuration: Configuration
    package let identity: WorkerIdentity
    private let logger: Logger
    private let notifier: SystemdNotifier
    private let client: GenAuthClient
    private let events = DispatchEvents()
    private let writes = WriteQueue()
    /// The jobs this process holds, with their claim tokens: what the heartbeat extends.
    private let leases = LeaseBook()
    let breaker: CircuitBreaker
    /// What a reload may change (`apply`), read by the claim loop at the start of each batch.
    let settings: LiveSettings.Holder
    private let metrics = DispatcherMetrics()
    private let stats: WorkerStats

    package init(
        configuration: Configuration, logger: Logger, identity: WorkerIdentity,
        notifier: SystemdNotifier = SystemdNotifier()
    ) throws {
        var genauth = configuration.genauth
        genauth.maximumConnections = configuration.claims.concurrency
        self.client = try GenAuthClient(configuration: genauth)
        self.configuration = configuration
        self.identity = identity
        self.notifier = notifier
        var logger = logger
        logger[metadataKey: "worker"] = "\(identity.id)"
        self.logger = logger
        // A probe that neither answers nor is handed back within its call's timeout (and a margin) is lost.
        self.breaker = CircuitBreaker(
            configuration: configuration.breaker,
            probeTimeout: configuration.genauth.timeout + .seconds(5))
        self.stats = WorkerStats(metrics: metrics)
        self.settings = LiveSettings.Holder(LiveSettings(configuration))
    }

    /// Connects and checks the schema; throws `StartupError` when the daemon cannot work at all.
    package static func checkDatabase(_ url: String, requiredSchemaVersion: Int = SchemaVersion.required) async throws {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(url)
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
            throw StartupError(
                code: .databaseUnavailable,
                message:
                    "the database schema is at version \(version.map(String.init) ?? "none"), this daemon needs \(requiredSchemaVersion): run `sms-dispatcher migrate`"
            )
        }
        try await PoolerCheck.verify(url)
    }

    /// A session for one service, named in `pg_stat_activity` after this worker.
    /// `keyLookups`: the claim loop's and the writer's sessions, whose statements all find their rows by
    /// key (see `SessionSettings.Plans`); the others keep the server's planning (the fraud watch's
    /// aggregates may want a scan).
    private func session(_ what: String, quiet: Bool = false, keyLookups: Bool = false) -> DatabaseSession {
        var settings = configuration.sessionSettings
        if keyLookups { settings.plans = .keyLookups }
        return DatabaseSession(
            url: configuration.databaseURL, settings: settings,
            applicationName: "sms-dispatcher \(identity.id)", what: what, logger: logger, quiet: quiet)
    }

    package func run() async throws {
        let configuration = self.configuration
        logger.notice(
            "dispatcher started",
            metadata: [
                "concurrency": "\(configuration.claims.concurrency)",
                "poll_interval": "\(configuration.claims.pollInterval.seconds)",
                "genauth_host": "\(configuration.genauth.host)",
            ])
        // Start-up checks (database, schema version, GenAuth) ran before run(): ready now.
        notifier.ready(status: "dispatching as \(identity.id), up to \(configuration.claims.concurrency) calls in flight")

        // Pauses as this daemon knows them (log, metric, status); the claim enforces them itself.
        let pauses = PauseBoard(logger: logger)
        // The fraud guard's decisions and blocks, for the log and metrics; the reservation enforces it.
        let fraud = FraudBoard(logger: logger)
        let stopping = StopFlag()
        var wake = WakeSource(pollInterval: configuration.claims.pollInterval, events: events, pauses: pauses)
        wake.stopping = stopping
        let writer = OutcomeWriter(
            worker: identity.id, throttleWindow: configuration.admission.throttleWindow,
            smallBatch: max(1, configuration.claims.concurrency / 2), writes: writes,
            leases: leases, events: events, metrics: metrics,
            session: session("write-back", keyLookups: true), logger: logger)
        let heartbeat = HeartbeatService(
            configuration: configuration.heartbeat, identity: identity, lease: configuration.claims.lease,
            settings: settings, leases: leases, stats: stats, writes: writes, pauses: pauses,
            reporter: StatusReporter(
                notifier: notifier, metrics: metrics, breaker: breaker,
                publishesQueueDepth: configuration.publishesQueueDepth),
            session: session("heartbeat"), logger: logger)
        let rescuer = LeaseRescuer(
            configuration: configuration.rescuer, policy: configuration.triage.policy,
            throttleWindow: configuration.admission.throttleWindow,
            expirer: PausedJobExpirer(configuration: .init(), logger: logger),
            session: session("lease rescue", quiet: true), logger: logger, stopping: stopping)
        let fraudWatch = FraudWatch(
            configuration: configuration.fraudWatch, settings: settings, board: fraud,
            session: session("fraud watch", quiet: true), logger: logger, stopping: stopping)
        let retention = RetentionService(
            configuration: configuration.retention,
            session: session("retention", quiet: true), logger: logger, stopping: stopping)
        var claims = configuration.claims
        claims.callTimeout = configuration.genauth.timeout
        let loop = ClaimLoop(
            configuration: claims, identity: identity, settings: settings,
            sender: CallSender(
                client: client, breaker: breaker, metrics: metrics, stats: stats,
                writes: writes, events: events, pauses: pauses, book: CallBook(),
                timeout: configuration.genauth.timeout, logger: logger),
            events: events, writes: writes, leases: leases, stats: stats, breaker: breaker, fraud: fraud,
            notifier: notifier, logger: logger, session: session("database", keyLookups: true))
        let listenSession = session("LISTEN connection", quiet: true)
        let loopSession = loop.session

        // The services in start order; a graceful shutdown stops them one at a time in reverse, each
        // once the one after it has stopped: the claim loop drains first, the writer writes what the
        // drain decided, the wake sources and housekeeping stop, and the heartbeat (keeping the held
        // leases extended until then) stops last. Each returns only at its turn: a service that ended
        // on its own would make the group cancel the rest, so one that does shuts the daemon down.
        let services: [(any Service, String)] = [
            (heartbeat, "heartbeat"), (rescuer, "lease rescuer"), (fraudWatch, "fraud watch"),
            (retention, "retention"), (WakeSource.Listening(source: wake, session: listenSession), "LISTEN"),
            (WakeSource.Ticking(source: wake), "ticker"), (writer, "write-back"), (loop, "claim loop"),
        ]
        var group = ServiceGroupConfiguration(
            services: services.map {
                .init(
                    service: $0.0, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: $0.1)
            },
            logger: logger)
        // A backstop only: the drain and the writer bound themselves within it.
        group.maximumGracefulShutdownDuration = claims.drainLimit + writer.shutdownLimit + .seconds(5)
        var failure: (any Error)? = nil
        do {
            try await withGracefulShutdownHandler {
                try await ServiceGroup(configuration: group).run()
            } onGracefulShutdown: { [notifier] in
                stopping.set()
                notifier.stopping(status: "draining: no new claims, finishing calls in flight")
            }
        } catch is CancellationError {
            // Cancelled (a test, or the process ending): nothing failed.
        } catch {
            logger.error("a dispatcher service failed; stopping", metadata: ["error": "\(error)"])
            failure = error
        }
        // After every service (the heartbeat too: a last beat could re-create it): `sms.workers` lists
        // running daemons.
        var unregister = loopSession
        if let db = await unregister.connectOnce() {
            do {
                try await db.run(UnregisterWorker(worker: identity))
            } catch {
                logger.warning("could not remove this worker's row from sms.workers", metadata: ["error": "\(error)"])
            }
        }
        await unregister.close()
        await client.shutdown()
        if let failure {
            // Exit non-zero, so systemd restarts the daemon whole.
            throw DispatcherError(code: .serviceFailed, "a dispatcher service failed: \(failure)")
        }
        guard stopping.isSet || Task.isCancelled else {
            // Neither asked to stop nor cancelled: exit non-zero, so systemd restarts the daemon whole.
            logger.critical("a dispatcher service stopped on its own; the daemon stops so systemd restarts it")
            throw DispatcherError(code: .serviceStopped, "a dispatcher service stopped on its own")
        }
        logger.notice("dispatcher stopped")
    }
}
