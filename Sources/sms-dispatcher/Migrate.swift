import ArgumentParser
import Foundation
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

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
        } catch let error as MigrationError {
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
