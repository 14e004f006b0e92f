import ArgumentParser
import Foundation
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Create or upgrade the schema from the migrations built into this binary (sql/migrations/); idempotent, safe to run from two hosts at once."
    )
    @OptionGroup var options: CommonOptions
    @Option(
        name: .customLong("sql-dir"),
        help:
            "Apply the NNNN_name.sql files of this directory instead of the built-in migrations (default: $SMSD_SQL_DIR if set; for development and tests)."
    )
    var sqlDirectory: String?

    func run() async throws {
        let (config, _) = try await options.load(requireGenAuth: false)
        let logger = makeLogger(level: config.logLevel)
        let directory = sqlDirectory ?? ProcessInfo.processInfo.environment["SMSD_SQL_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        let migrator: Migrator
        do {
            migrator = try directory.map(Migrator.load(directory:)) ?? .embedded
        } catch let error as MigrationError {
            fail(error.description, code: ExitStatus.config)
        }
        // Said every time: a stale --sql-dir or SMSD_SQL_DIR would otherwise apply other files silently.
        print(directory.map { "migrations: the files of \($0) (not the built-in ones)" } ?? "migrations: built into this binary")
        let db = try await options.connect(config)
        do {
            let applied = try await migrator.migrate(db, logger: logger)
            print(
                applied.isEmpty
                    ? "schema is up to date (version \(migrator.latestVersion))"
                    : "applied \(applied.map(String.init).joined(separator: ", ")); schema is at version \(migrator.latestVersion)"
            )
        } catch {
            await db.close()
            fail("\(error)", code: 1)
        }
        await db.close()
    }
}
