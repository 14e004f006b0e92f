import ArgumentParser
import Foundation
import GenAuth
import Logging
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSMetricsEndpoint
import SMSModel
import ServiceLifecycle
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon until SIGTERM/SIGINT, then drain gracefully.",
        discussion: """
            SIGHUP (systemctl reload) re-reads the configuration file and environment: rate limit, channel \
            rules, caps, countries, breaker, retry and log level change at once; keys that need a restart \
            (database.url, concurrency, metrics.listen, ...) are named in the log and keep their running \
            values; an invalid file changes nothing and is logged with the key at fault.
            """)
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let (config, sources) = try await options.load(requireGenAuth: true)
        let logger = makeLogger(level: config.logLevel)
        for warning in sources.warnings { logger.warning("configuration: \(warning)") }
        // Trapped before anything can tell systemd we are ready: a SIGHUP's default action is to end
        // the process, and `systemctl reload` may come as soon as READY=1 has been sent.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        do {
            try await Dispatcher.checkDatabase(config.dispatcher.databaseURL)
            try await GenAuthProbe.check(config.dispatcher.genauth)
        } catch let error as StartupError {
            fail(error.message, code: error.code == .sharedSessions ? ExitStatus.config : ExitStatus.unavailable)
        } catch let error as GenAuthProbe.Unreachable {
            fail(error.description, code: ExitStatus.unavailable)
        }
        let notifier = SystemdNotifier()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var engine = config.dispatcher
        if let listen = config.metricsListen {
            services.append(.init(service: MetricsEndpoint.bootstrap(listen: listen, logger: logger)))
            engine.publishesQueueDepth = true
        }
        let dispatcher: Dispatcher
        do {
            dispatcher = try Dispatcher(
                configuration: engine, logger: logger,
                identity: .make(configured: engine.workerID), notifier: notifier)
        } catch {
            fail("cannot set up the GenAuth client for \(engine.genauth.host): \(error)", code: ExitStatus.config)
        }
        // First in the group, so stopped last: a SIGHUP during the drain is still a reload, never the
        // signal's default (the end of the process).
        services.insert(
            .init(
                service: Reloader(
                    options: options, initial: config, dispatcher: dispatcher,
                    notifier: notifier, hangups: hangups, logger: logger)), at: 0)
        // When the dispatcher has drained and returned, the whole group (the metrics endpoint too) stops.
        services.append(.init(service: dispatcher, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        // The first SIGTERM/SIGINT drains (ServiceGroup); a second one means "now": exit at once. Jobs
        // still leased are rescued by the other daemons when their lease runs out.
        let impatience = Task {
            var seen = 0
            for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                seen += 1
                if seen >= 2 {
                    logger.warning("second \(signal): exiting without waiting for calls in flight")
                    Foundation.exit(130)
                }
            }
        }
        try await group.run()
        impatience.cancel()
    }
}
