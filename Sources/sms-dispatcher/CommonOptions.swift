import ArgumentParser
import Foundation
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct CommonOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "YAML configuration file (default: $SMSD_CONFIG, else /etc/sms-dispatcher/sms-dispatcher.yaml if present).")
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
    func load(requireGenAuth: Bool) async throws -> (DaemonConfiguration, ConfigSources) {
        do {
            return try await loadOrThrow(requireGenAuth: requireGenAuth)
        } catch let error as ConfigError {
            fail(error.description, code: ExitStatus.config)
        }
    }

    /// The same file and environment as `load`, read the same way, but a problem is thrown (a
    /// `ConfigError` naming the key) instead of ending the process: a running daemon's reload (SIGHUP)
    /// refuses a bad file and carries on.
    func loadOrThrow(requireGenAuth: Bool) async throws -> (DaemonConfiguration, ConfigSources) {
        try await DaemonConfiguration.load(file: configFile, requireGenAuth: requireGenAuth)
    }

    /// Connects, or exits 69; `exitOnFailure: false` throws instead (a waiting command reconnecting).
    func connect(_ config: DaemonConfiguration, exitOnFailure: Bool = true) async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(config.dispatcher.databaseURL)
        } catch {
            guard exitOnFailure else { throw error }
            fail("cannot connect to PostgreSQL: \(error)", code: ExitStatus.unavailable)
        }
    }

    /// The operator commands' shape: load the configuration, connect (exit 69 if impossible), run
    /// `body`, close; a failure in `body` exits `code` saying `what` failed.
    func withDatabase<T: Sendable>(
        _ what: String, code: Int32 = 1,
        _ body: (PostgresConnection, DaemonConfiguration) async throws -> T
    ) async throws -> T {
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
