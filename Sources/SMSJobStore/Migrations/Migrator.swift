import Foundation
import Logging
import PostgresClient
import SMSSchema

/// One file of `sql/migrations/`: `NNNN_name.sql`, applied once, in order of NNNN.
package struct Migration: Sendable, Equatable {
    package let version: Int
    package let name: String
    package let sql: String

    package init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies the migrations (`sql/migrations/`, embedded in the binary): each in its own transaction together with its row in
/// `sms.schema_migrations`, under a session advisory lock so two hosts migrating at once take turns
/// (the second finds nothing left to do).
package struct Migrator: Sendable {
    package let migrations: [Migration]

    package init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// The migrations compiled into this binary (`sql/migrations/`, embedded by SwiftPM): what
    /// `sms-dispatcher migrate` applies unless told a directory.
    package static let embedded: Migrator = {
        do {
            return try parse(
                EmbeddedMigrations.files.map { ($0.name, String(decoding: $0.bytes, as: UTF8.self)) },
                source: "the embedded migrations")
        } catch {
            // Checked by the build's tests (EmbeddedMigrationsTests): a broken list never ships.
            fatalError("\(error)")
        }
    }()

    /// Reads `NNNN_name.sql` files from a directory (`migrate --sql-dir`, tests); anything else there is
    /// ignored.
    package static func load(directory: String) throws -> Migrator {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw MigrationError(
                code: .unreadableDirectory, "cannot read migrations from \(directory): \(error.localizedDescription)")
        }
        var files: [(name: String, sql: String)] = []
        for name in names where name.hasSuffix(".sql") {
            do {
                files.append((name, try String(contentsOfFile: directory + "/" + name, encoding: .utf8)))
            } catch {
                throw MigrationError(
                    code: .unreadableDirectory, "cannot read migration \(directory)/\(name): \(error.localizedDescription)")
            }
        }
        return try parse(files, source: directory)
    }

    /// `NNNN_name.sql` files into migrations; other names are ignored, two files of one version refused.
    static func parse(_ files: [(name: String, sql: String)], source: String) throws -> Migrator {
        var migrations: [Migration] = []
        for (file, sql) in files where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else { continue }
            if migrations.contains(where: { $0.version == version }) {
                throw MigrationError(code: .unreadableDirectory, "two migrations have version \(version) in \(source)")
            }
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        guard !migrations.isEmpty else {
            throw MigrationError(code: .unreadableDirectory, "no NNNN_name.sql migrations in \(source)")
        }
        return Migrator(migrations: migrations)
    }

    /// The version the schema has once every migration here is applied.
    package var latestVersion: Int { migrations.last?.version ?? 0 }

    /// How long a migration's statements wait for a lock: `ALTER TABLE` waiting behind a long transaction
    /// (a report, a forgotten `psql`) would queue every producer's insert behind it for as long. After
    /// this the migration rolls back, says which sessions hold transactions open, and tries again
    /// `retryAfter` later (producers go on meanwhile), until `patience` has passed.
    package var lockTimeout = Duration.seconds(2)
    package var retryAfter = Duration.seconds(3)
    package var patience = Duration.seconds(600)

    /// Applies what is missing; returns the versions applied now.
    @discardableResult
    package func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        try await takeMigrationLock(connection, logger: logger)
        do {
            try await connection.execute(
                """
                CREATE SCHEMA IF NOT EXISTS sms;
                CREATE TABLE IF NOT EXISTS sms.schema_migrations (
                    version    int PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                """)
            let applied = Set(
                try await connection.query("SELECT version FROM sms.schema_migrations").rows
                    .map { try $0.requiredInt("version") })
            var appliedNow: [Int] = []
            for migration in migrations where !applied.contains(migration.version) {
                try await apply(migration, on: connection, logger: logger)
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

    /// One migration in its own transaction, its lock waits bounded by `lockTimeout` and retried.
    private func apply(_ migration: Migration, on connection: PostgresConnection, logger: Logger) async throws {
        let deadline = ContinuousClock.now + patience
        var tries = 0
        while true {
            tries += 1
            try await connection.execute("BEGIN")
            do {
                try await connection.execute("SET LOCAL lock_timeout = \(Int(lockTimeout.seconds * 1000))")
                try await connection.execute(migration.sql)
                try await connection.query(
                    "INSERT INTO sms.schema_migrations (version, name) VALUES ($1, $2)",
                    [String(migration.version), migration.name])
                try await connection.commit()
                return
            } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.lockNotAvailable {
                try? await connection.execute("ROLLBACK")
                let open = await Self.openTransactions(connection)
                guard ContinuousClock.now + retryAfter < deadline else {
                    throw MigrationError(
                        code: .lockUnavailable,
                        "migration \(migration.version) (\(migration.name)) could not take its locks within \(Int(patience.seconds)) s (\(tries) tries): \(open); end those transactions and run migrate again"
                    )
                }
                logger.warning(
                    "a migration is waiting for locks other sessions hold; rolled back, trying again (producers are not held meanwhile)",
                    metadata: [
                        "version": "\(migration.version)", "try": "\(tries)",
                        "retry_in_s": "\(retryAfter.seconds)", "open_transactions": "\(open)",
                    ])
                try await Task.sleep(for: retryAfter)
            } catch {
                try? await connection.execute("ROLLBACK")
                throw MigrationError(
                    code: .failed, "migration \(migration.version) (\(migration.name)) failed and was rolled back: \(error)")
            }
        }
    }

    /// The session advisory lock two `migrate`s take turns on; any login may hold it, so a holder that
    /// is not another migrate is named, and the wait is bounded by `patience`.
    private func takeMigrationLock(_ connection: PostgresConnection, logger: Logger) async throws {
        let deadline = ContinuousClock.now + patience
        var logged = false
        while !(try await AdvisoryLock.migrations.tryLock(on: connection)) {
            let holder =
                (try? await connection.query(
                    """
                    SELECT a.pid, a.usename, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1::bigint % 4294967296 LIMIT 1
                    """, [String(AdvisoryLock.migrations.rawValue)]
                ).first).map { row in
                    "pid \((try? row.string("pid")) ?? "?") (\((try? row.string("usename")) ?? "?"), \((try? row.string("application_name")) ?? ""))"
                } ?? "another session"
            guard ContinuousClock.now + .seconds(1) < deadline else {
                throw MigrationError(
                    code: .lockUnavailable,
                    "the migration lock (advisory lock \(AdvisoryLock.migrations.rawValue)) is held by \(holder) for over \(Int(patience.seconds)) s"
                )
            }
            if !logged {
                logger.warning(
                    "waiting for the migration lock: another migrate is running, or another session holds it",
                    metadata: ["holder": "\(holder)"])
                logged = true
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// The oldest open transactions of the database (other than this session), for an operator to find
    /// what a migration is waiting behind.
    static func openTransactions(_ connection: PostgresConnection) async -> String {
        let rows = try? await connection.query(
            """
            SELECT pid, usename, application_name, round(extract(epoch FROM now() - xact_start))::int AS age_s, state
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
            ORDER BY xact_start LIMIT 3
            """
        ).rows
        let listed =
            rows?.map { row in
                "pid \((try? row.string("pid")) ?? "?") user \((try? row.string("usename")) ?? "?") app '\((try? row.string("application_name")) ?? "")' open \((try? row.string("age_s")) ?? "?") s (\((try? row.string("state")) ?? "?"))"
            } ?? []
        return listed.isEmpty ? "no other open transaction seen" : listed.joined(separator: "; ")
    }

    /// The highest applied version, or nil when the schema was never migrated.
    package static func currentVersion(_ connection: PostgresConnection) async throws -> Int? {
        let exists = try await connection.query("SELECT to_regclass('sms.schema_migrations') IS NOT NULL AS present")
        guard try exists.first?.bool("present") == true else { return nil }
        return try await connection.query("SELECT max(version) AS version FROM sms.schema_migrations").first?.int("version")
    }
}

/// Why migrating failed. A struct with a `Code`, as swift-service-lifecycle's errors are.
package struct MigrationError: Error, Sendable, CustomStringConvertible {
    package struct Code: Hashable, Sendable {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The `sql/` directory cannot be read, or holds no (or clashing) migrations.
        package static let unreadableDirectory = Code("unreadableDirectory")
        /// A migration's SQL failed; it was rolled back.
        package static let failed = Code("failed")
        /// Its locks stayed held by other sessions for longer than the migrator's patience.
        package static let lockUnavailable = Code("lockUnavailable")
    }
    package let code: Code
    package let message: String
    package init(code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    package var description: String { message }
}
