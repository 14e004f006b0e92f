import ArgumentParser
import Foundation
import Logging
import PostgresClient
import SMSDispatcherCore
import ServiceLifecycle
import UnixSignals

/// sysexits.h codes the contract promises.
enum ExitStatus {
    static let usage: Int32 = 64
    static let unavailable: Int32 = 69
    static let config: Int32 = 78
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (default: $SMSD_CONFIG, else /etc/sms-dispatcher/sms-dispatcher.yaml if present).")
    var config: String?

    var configFile: String? {
        if let config { return config }
        if let fromEnvironment = ProcessInfo.processInfo.environment["SMSD_CONFIG"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        let system = "/etc/sms-dispatcher/sms-dispatcher.yaml"
        return FileManager.default.fileExists(atPath: system) ? system : nil
    }

    /// Loads the configuration or exits 78 with the key at fault.
    func load(requireGenAuth: Bool) async throws -> (DispatcherConfig, ConfigSources) {
        do {
            return try await DispatcherConfig.load(file: configFile, requireGenAuth: requireGenAuth)
        } catch let error as ConfigError {
            fail(error.description, code: ExitStatus.config)
        }
    }

    func connect(_ config: DispatcherConfig) async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(config.databaseURL)
        } catch {
            fail("cannot connect to PostgreSQL: \(error)", code: ExitStatus.unavailable)
        }
    }

    /// The operator commands' shape: load the configuration, connect (exit 69 if impossible), run
    /// `body`, close; a failure in `body` exits `code` saying `what` failed.
    func withDatabase<T: Sendable>(_ what: String, code: Int32 = 1,
                                   _ body: (PostgresConnection, DispatcherConfig) async throws -> T) async throws -> T {
        let (config, _) = try await load(requireGenAuth: false)
        let db = try await connect(config)
        do {
            let result = try await body(db, config)
            await db.close()
            return result
        } catch {
            await db.close()
            fail("\(what) failed: \(error)", code: code)
        }
    }
}

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("sms-dispatcher: \(message)\n".utf8))
    exit(code)
}

func makeLogger(level: Logger.Level) -> Logger {
    let journal = DaemonLogHandler.underJournal()
    LoggingSystem.bootstrap { _ in DaemonLogHandler(level: level, journal: journal) }
    var logger = Logger(label: "sms-dispatcher")
    logger.logLevel = level
    return logger
}

@main
struct SMSDispatcherCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sms-dispatcher",
        abstract: "Sends SMS jobs from PostgreSQL through GenAuth's send-SMS API.",
        discussion: "Exit codes: 0 ok, 64 usage, 69 database or API unavailable at start-up, 78 configuration error.",
        version: SMSDispatcherVersion.current,
        subcommands: [Run.self, Migrate.self, Enqueue.self, Status.self, CheckConfig.self, Requeue.self, Cancel.self,
                      Purge.self])
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon until SIGTERM/SIGINT, then drain gracefully.")
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let (config, _) = try await options.load(requireGenAuth: true)
        let logger = makeLogger(level: config.logLevel)
        do {
            try await Dispatcher.checkDatabase(config, requiredSchemaVersion: SchemaVersion.required)
            try await GenAuthProbe.check(config)
        } catch let error as StartupError {
            fail(error.message, code: ExitStatus.unavailable)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let listen = config.metricsListen {
            services.append(.init(service: MetricsEndpoint.bootstrap(listen: listen, logger: logger)))
        }
        let dispatcher: Dispatcher
        do {
            dispatcher = try Dispatcher(config: config, logger: logger, identity: .make(configured: config.workerID))
        } catch {
            fail("cannot set up the GenAuth client for \(config.genauthHost): \(error)", code: ExitStatus.config)
        }
        // When the dispatcher has drained and returned, the whole group (the metrics endpoint too) stops.
        services.append(.init(service: dispatcher, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(configuration: .init(
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

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade the schema from the sql/ files; idempotent, safe to run from two hosts at once.")
    @OptionGroup var options: CommonOptions
    @Option(name: .customLong("sql-dir"), help: "Directory of NNNN_name.sql files (default: $SMSD_SQL_DIR, ./sql, <prefix>/share/sms-dispatcher/sql).")
    var sqlDirectory: String?

    func run() async throws {
        let (config, _) = try await options.load(requireGenAuth: false)
        let logger = makeLogger(level: config.logLevel)
        let directory = Migrator.locateDirectory(explicit: sqlDirectory, environment: ProcessInfo.processInfo.environment)
        let migrator: Migrator
        do {
            migrator = try Migrator.load(directory: directory)
        } catch let error as ConfigError {
            fail(error.description, code: ExitStatus.config)
        }
        let db = try await options.connect(config)
        do {
            let applied = try await migrator.migrate(db, logger: logger)
            print(applied.isEmpty
                ? "schema is up to date (version \(migrator.latestVersion))"
                : "applied \(applied.map(String.init).joined(separator: ", ")); schema is at version \(migrator.latestVersion)")
        } catch {
            await db.close()
            fail("\(error)", code: 1)
        }
        await db.close()
    }
}

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Insert one job and print its id.")
    @OptionGroup var options: CommonOptions
    @Option(help: "One of: \(Channel.allCases.map(\.rawValue).joined(separator: ", ")).") var channel: String
    @Option(help: "National number, digits only.") var phone: String
    @Option(name: .customLong("country-code"), help: "+CC; omit for mainland China.") var countryCode: String?
    @Option(help: "Higher is sent first.") var priority: Int?
    @Option(name: .customLong("idempotency-key"), help: "A repeat with the same key returns the first job's id.") var idempotencyKey: String?
    @Option(name: .customLong("expires-in"), help: "Seconds from now after which it must not be sent.") var expiresIn: Double?

    func validate() throws {
        guard Channel(rawValue: channel) != nil else {
            throw ValidationError("--channel must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let priority, !(Int(Int16.min)...Int(Int16.max)).contains(priority) {
            throw ValidationError("--priority must fit in a smallint")
        }
    }

    func run() async throws {
        let id = try await options.withDatabase("enqueue") { db, _ in
            try await JobStore.enqueue(db, channel: channel, phoneNumber: phone, countryCode: countryCode,
                                       priority: priority, idempotencyKey: idempotencyKey, expiresInSeconds: expiresIn).id
        }
        print(id)
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show queue and worker state.")
    @OptionGroup var options: CommonOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        let report = try await options.withDatabase("status", code: ExitStatus.unavailable) { db, config in
            try await StatusReport.load(db, heartbeatInterval: config.heartbeatInterval)
        }
        print(json ? try report.json() : report.table(), terminator: json ? "\n" : "")
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Load and validate the configuration; print it with secrets redacted.")
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let (config, sources) = try await options.load(requireGenAuth: true)
        print("configuration OK\(options.configFile.map { " (file: \($0))" } ?? " (no file)")")
        let set = Dictionary(sources.entries.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        for spec in DispatcherConfig.keys {
            let value = set[spec.name] ?? "(default) " + config.describe(spec.name)
            print("  \(spec.name) = \(value)")
        }
    }
}

/// `30d`, `12h`, `15m`, `90s` or plain seconds.
func parseDuration(_ text: String) -> Double? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]
    if let last = text.last, let unit = units[last], let value = Double(text.dropLast()), value >= 0 {
        return value * unit
    }
    return Double(text).flatMap { $0 >= 0 ? $0 : nil }
}

struct Requeue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put finished jobs (default: failed and expired) back to pending with fresh attempts.",
        discussion: "The TTL counts from the requeue. Prints the requeued ids.")
    @OptionGroup var options: CommonOptions
    @Option(name: .customLong("state"), help: "States to requeue (repeatable): failed, expired, rejected, cancelled, superseded.")
    var states: [String] = ["failed", "expired"]
    @Option(help: "Only this channel.") var channel: String?
    @Option(name: .customLong("id"), help: "Only these job ids (repeatable).") var ids: [Int] = []
    @Option(name: .customLong("finished-within"), help: "Only jobs finished within this long, e.g. 2h.") var finishedWithin: String?
    @Option(help: "At most this many jobs.") var limit = 10_000
    @Flag(name: .customLong("dry-run"), help: "Only print what would be requeued.") var dryRun = false

    func validate() throws {
        let allowed: Set<String> = ["failed", "expired", "rejected", "cancelled", "superseded"]
        if let bad = states.first(where: { !allowed.contains($0) }) {
            throw ValidationError("--state \(bad) cannot be requeued; one of \(allowed.sorted().joined(separator: ", "))")
        }
        if let channel, Channel(rawValue: channel) == nil { throw ValidationError("--channel \(channel) is not a GenAuth channel") }
        if let finishedWithin, parseDuration(finishedWithin) == nil {
            throw ValidationError("--finished-within must be a duration like 30m, 2h or 7d")
        }
        guard limit > 0 else { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        let requeued = try await options.withDatabase("requeue") { db, _ in
            try await JobStore.requeue(db, states: states, channel: channel, ids: ids,
                                       finishedWithinSeconds: finishedWithin.flatMap(parseDuration),
                                       limit: limit, dryRun: dryRun)
        }
        print("\(dryRun ? "would requeue" : "requeued") \(requeued.count) job(s)"
            + (requeued.isEmpty ? "" : ": " + requeued.map(String.init).joined(separator: " ")))
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel pending jobs by id.")
    @OptionGroup var options: CommonOptions
    @Argument(help: "Job ids.") var ids: [Int]

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("give at least one job id") }
    }

    func run() async throws {
        let results = try await options.withDatabase("cancel") { db, _ in
            try await JobStore.cancel(db, ids: ids).map { CancelResult(id: $0.id, result: $0.result) }
        }
        for entry in results { print("\(entry.id): \(entry.result)") }
        // Exit 1 when any job could not be cancelled, so scripts notice.
        if results.contains(where: { $0.result != "cancelled" }) { throw ExitCode(1) }
    }

    struct CancelResult: Sendable {
        let id: Int64
        let result: String
    }
}

struct Purge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete finished jobs (and their attempts) older than a duration, in batches.")
    @OptionGroup var options: CommonOptions
    @Option(name: .customLong("older-than"), help: "e.g. 30d, 12h, 90m, 3600 (seconds).") var olderThan: String
    @Option(name: .customLong("batch-size"), help: "Rows per statement.") var batchSize = 1000

    func validate() throws {
        guard parseDuration(olderThan) != nil else { throw ValidationError("--older-than must be a duration like 30d, 12h or 90m") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() async throws {
        let deleted = try await options.withDatabase("purge") { db, _ in
            try await JobStore.purge(db, olderThanSeconds: parseDuration(olderThan) ?? 0, batch: batchSize)
        }
        print("deleted \(deleted) finished job(s) older than \(olderThan)")
    }
}
