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
public final class Dispatcher: Service, Sendable {
    public let configuration: Configuration
    public let identity: WorkerIdentity
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

    public init(configuration: Configuration, logger: Logger, identity: WorkerIdentity,
                notifier: SystemdNotifier = SystemdNotifier()) throws {
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
        self.breaker = CircuitBreaker(configuration: configuration.breaker,
                                      probeTimeout: configuration.genauth.timeout + .seconds(5))
        self.stats = WorkerStats(metrics: metrics)
        self.settings = LiveSettings.Holder(LiveSettings(configuration))
    }

    /// Connects and checks the schema; throws `StartupError` when the daemon cannot work at all.
    public static func checkDatabase(_ url: String, requiredSchemaVersion: Int = SchemaVersion.required) async throws {
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
            throw StartupError(code: .databaseUnavailable, message:
                "the database schema is at version \(version.map(String.init) ?? "none"), this daemon needs \(requiredSchemaVersion): run `sms-dispatcher migrate`")
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
        return DatabaseSession(url: configuration.databaseURL, settings: settings,
                        applicationName: "sms-dispatcher \(identity.id)", what: what, logger: logger, quiet: quiet)
    }

    public func run() async throws {
        let configuration = self.configuration
        logger.notice("dispatcher started", metadata: [
            "concurrency": "\(configuration.claims.concurrency)", "poll_interval": "\(configuration.claims.pollInterval.seconds)",
            "genauth_host": "\(configuration.genauth.host)",
        ])
        // Start-up checks (database, schema version, GenAuth) ran before run(): ready now.
        notifier.ready(status: "dispatching as \(identity.id), up to \(configuration.claims.concurrency) calls in flight")

        // Pauses as this daemon knows them (log, metric, status); the claim enforces them itself.
        let pauses = PauseBoard(logger: logger)
        // The fraud guard's decisions and blocks, for the log and metrics; the reservation enforces it.
        let fraud = FraudBoard(logger: logger)
        let wake = WakeSource(pollInterval: configuration.claims.pollInterval, events: events, pauses: pauses)
        let writer = OutcomeWriter(worker: identity.id, throttleWindow: configuration.admission.throttleWindow,
                                   smallBatch: max(1, configuration.claims.concurrency / 2), writes: writes,
                                   leases: leases, events: events, metrics: metrics,
                                   session: session("write-back", keyLookups: true), logger: logger)
        let heartbeat = HeartbeatService(
            configuration: configuration.heartbeat, identity: identity, lease: configuration.claims.lease,
            settings: settings, leases: leases, stats: stats, writes: writes, pauses: pauses,
            reporter: StatusReporter(notifier: notifier, metrics: metrics, breaker: breaker,
                                     publishesQueueDepth: configuration.publishesQueueDepth),
            session: session("heartbeat"), logger: logger)
        let rescuer = LeaseRescuer(configuration: configuration.rescuer, policy: configuration.triage.policy,
                                   throttleWindow: configuration.admission.throttleWindow,
                                   expirer: PausedJobExpirer(configuration: .init(), logger: logger),
                                   session: session("lease rescue", quiet: true), logger: logger)
        let fraudWatch = FraudWatch(configuration: configuration.fraudWatch, settings: settings, board: fraud,
                                    session: session("fraud watch", quiet: true), logger: logger)
        let retention = RetentionService(configuration: configuration.retention,
                                         session: session("retention", quiet: true), logger: logger)
        var claims = configuration.claims
        claims.callTimeout = configuration.genauth.timeout
        var loop = ClaimLoop(
            configuration: claims, identity: identity, settings: settings,
            sender: CallSender(client: client, breaker: breaker, metrics: metrics, stats: stats,
                               writes: writes, events: events, pauses: pauses, book: CallBook(),
                               timeout: configuration.genauth.timeout, logger: logger),
            events: events, writes: writes, leases: leases, stats: stats, breaker: breaker, fraud: fraud,
            notifier: notifier, logger: logger, session: session("database", keyLookups: true))
        let listenSession = session("LISTEN connection", quiet: true)

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    var session = listenSession
                    await wake.listen(session: &session)
                }
                group.addTask { await wake.tick() }
                group.addTask {
                    var heartbeat = heartbeat
                    await heartbeat.run()
                }
                group.addTask {
                    var writer = writer
                    await writer.run()
                }
                group.addTask {
                    var rescuer = rescuer
                    await rescuer.run()
                }
                group.addTask {
                    var fraudWatch = fraudWatch
                    await fraudWatch.run()
                }
                // Also with retention.max_age_days 0 (jobs kept): its housekeeping forgets stale rows.
                group.addTask {
                    var retention = retention
                    await retention.run()
                }
                await loop.run()
                events.close()
                writes.finish()
                // Outcomes already decided are the truth: the writer gets a bounded while more to write
                // them (a slow database at shutdown), the heartbeat still extending their leases, rather
                // than leaving them to the rescue's "delivery unknown". Within TimeoutStopSec (30 s):
                // grace (10 s) + this (10 s). Checked twenty times a second, only while stopping.
                for _ in 0..<200 where writes.unsettled > 0 {
                    try? await Task.sleep(for: .milliseconds(50))
                }
                // The heartbeat kept the leases extended through the drain; now everything stops.
                group.cancelAll()
            }
        } onGracefulShutdown: { [notifier, events] in
            // The claim loop drains on this event; LISTEN, the rescuer, the fraud watch and retention stop on the same
            // graceful shutdown (`Task.isShuttingDownGracefully`, inherited by their tasks); the
            // heartbeat and the writer carry on until the drain is over.
            notifier.stopping(status: "draining: no new claims, finishing calls in flight")
            events.send(.shutdownRequested)
        }
        // After every task (the heartbeat too: a last beat could re-create it): `sms.workers` lists
        // running daemons.
        if let db = await loop.session.connectOnce() {
            do {
                try await db.run(UnregisterWorker(worker: identity))
            } catch {
                logger.warning("could not remove this worker's row from sms.workers", metadata: ["error": "\(error)"])
            }
        }
        await loop.session.close()
        await client.shutdown()
        logger.notice("dispatcher stopped")
    }
}
