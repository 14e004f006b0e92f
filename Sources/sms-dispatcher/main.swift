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
        subcommands: [Run.self, Migrate.self, Enqueue.self, Status.self, CheckConfig.self])
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
        let dispatcher = Dispatcher(config: config, logger: logger, identity: .make(configured: config.workerID))
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: dispatcher)],
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
        let (config, _) = try await options.load(requireGenAuth: false)
        let db = try await options.connect(config)
        do {
            let (id, _) = try await JobStore.enqueue(db, channel: channel, phoneNumber: phone, countryCode: countryCode,
                                                     priority: priority, idempotencyKey: idempotencyKey,
                                                     expiresInSeconds: expiresIn)
            print(id)
        } catch {
            await db.close()
            fail("enqueue failed: \(error)", code: 1)
        }
        await db.close()
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show queue and worker state.")
    @OptionGroup var options: CommonOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        let (config, _) = try await options.load(requireGenAuth: false)
        let db = try await options.connect(config)
        do {
            let report = try await StatusReport.load(db, heartbeatInterval: config.heartbeatInterval)
            print(json ? try report.json() : report.table(), terminator: json ? "\n" : "")
        } catch {
            await db.close()
            fail("status failed: \(error)", code: ExitStatus.unavailable)
        }
        await db.close()
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
