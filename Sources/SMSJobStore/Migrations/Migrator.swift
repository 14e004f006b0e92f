import Foundation
import Logging
import PostgresClient

/// One file of `sql/`: `NNNN_name.sql`, applied once, in order of NNNN.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String
}

/// Applies `sql/` migrations: each in its own transaction together with its row in
/// `sms.schema_migrations`, under a session advisory lock so two hosts migrating at once take turns
/// (the second finds nothing left to do).
public struct Migrator: Sendable {
    public let migrations: [Migration]

    public init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Reads `NNNN_name.sql` files from a directory; anything else there is ignored.
    public static func load(directory: String) throws -> Migrator {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw MigrationError(code: .unreadableDirectory, "cannot read migrations from \(directory): \(error.localizedDescription)")
        }
        var migrations: [Migration] = []
        for file in files where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else { continue }
            let sql: String
            do {
                sql = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            } catch {
                throw MigrationError(code: .unreadableDirectory, "cannot read migration \(directory)/\(file): \(error.localizedDescription)")
            }
            if migrations.contains(where: { $0.version == version }) {
                throw MigrationError(code: .unreadableDirectory, "two migrations have version \(version) in \(directory)")
            }
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        guard !migrations.isEmpty else {
            throw MigrationError(code: .unreadableDirectory, "no NNNN_name.sql migrations in \(directory)")
        }
        return Migrator(migrations: migrations)
    }

    /// The version the schema has once every migration here is applied.
    public var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Applies what is missing; returns the versions applied now.
    @discardableResult
    public func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        try await AdvisoryLock.migrations.lock(on: connection)
        do {
            try await connection.execute("""
                CREATE SCHEMA IF NOT EXISTS sms;
                CREATE TABLE IF NOT EXISTS sms.schema_migrations (
                    version    int PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                """)
            let applied = Set(try await connection.query("SELECT version FROM sms.schema_migrations").rows
                .map { try $0.requiredInt("version") })
            var appliedNow: [Int] = []
            for migration in migrations where !applied.contains(migration.version) {
                try await connection.execute("BEGIN")
                do {
                    try await connection.execute(migration.sql)
                    try await connection.query(
                        "INSERT INTO sms.schema_migrations (version, name) VALUES ($1, $2)",
                        [String(migration.version), migration.name])
                    try await connection.commit()
                } catch {
                    try? await connection.execute("ROLLBACK")
                    throw MigrationError(code: .failed, "migration \(migration.version) (\(migration.name)) failed and was rolled back: \(error)")
                }
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                appliedNow.append(migration.version)
            }
            try await AdvisoryLock.migrations.unlock(on: connection)
            return appliedNow
        } catch {
            try? await AdvisoryLock.migrations.unlock(on: connection)
            throw error
        }
    }

    /// The highest applied version, or nil when the schema was never migrated.
    public static func currentVersion(_ connection: PostgresConnection) async throws -> Int? {
        let exists = try await connection.query("SELECT to_regclass('sms.schema_migrations') IS NOT NULL AS present")
        guard try exists.first?.bool("present") == true else { return nil }
        return try await connection.query("SELECT max(version) AS version FROM sms.schema_migrations").first?.int("version")
    }

    /// Finds `sql/`: an explicit directory, `$SMSD_SQL_DIR`, `./sql`, then the installed
    /// `<prefix>/share/sms-dispatcher/sql` next to the executable's `bin/`.
    public static func locateDirectory(explicit: String?, environment: [String: String]) -> String {
        if let explicit { return explicit }
        if let fromEnvironment = environment["SMSD_SQL_DIR"], !fromEnvironment.isEmpty { return fromEnvironment }
        var candidates = [FileManager.default.currentDirectoryPath + "/sql"]
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        candidates.append(executable.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("share/sms-dispatcher/sql").path)
        candidates.append("/usr/share/sms-dispatcher/sql")
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/0001_jobs.sql") } ?? candidates[0]
    }
}

/// Why migrating failed. A struct with a `Code`, as swift-service-lifecycle's errors are.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The `sql/` directory cannot be read, or holds no (or clashing) migrations.
        public static let unreadableDirectory = Code("unreadableDirectory")
        /// A migration's SQL failed; it was rolled back.
        public static let failed = Code("failed")
    }
    public let code: Code
    public let message: String
    public init(code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
