import Foundation
import Logging
import PostgresClient

/// One file of `sql/`: `NNNN_name.sql`, applied once, in order of NNNN.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
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

    /// How long a migration's statements wait for a lock: `ALTER TABLE` waiting behind a long transaction
    /// (a report, a forgotten `psql`) would queue every producer's insert behind it for as long. After
    /// this the migration rolls back, says which sessions hold transactions open, and tries again
    /// `retryAfter` later (producers go on meanwhile), until `patience` has passed.
    public var lockTimeout = Duration.seconds(2)
    public var retryAfter = Duration.seconds(3)
    public var patience = Duration.seconds(600)

    /// Applies what is missing; returns the versions applied now.
    @discardableResult
    public func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        try await takeMigrationLock(connection, logger: logger)
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
                    throw MigrationError(code: .lockUnavailable,
                        "migration \(migration.version) (\(migration.name)) could not take its locks within \(Int(patience.seconds)) s (\(tries) tries): \(open); end those transactions and run migrate again")
                }
                logger.warning("a migration is waiting for locks other sessions hold; rolled back, trying again (producers are not held meanwhile)",
                               metadata: ["version": "\(migration.version)", "try": "\(tries)",
                                          "retry_in_s": "\(retryAfter.seconds)", "open_transactions": "\(open)"])
                try await Task.sleep(for: retryAfter)
            } catch {
                try? await connection.execute("ROLLBACK")
                throw MigrationError(code: .failed, "migration \(migration.version) (\(migration.name)) failed and was rolled back: \(error)")
            }
        }
    }

    /// The session advisory lock two `migrate`s take turns on; any login may hold it, so a holder that
    /// is not another migrate is named, and the wait is bounded by `patience`.
    private func takeMigrationLock(_ connection: PostgresConnection, logger: Logger) async throws {
        let deadline = ContinuousClock.now + patience
        var logged = false
        while !(try await AdvisoryLock.migrations.tryLock(on: connection)) {
            let holder = (try? await connection.query("""
                SELECT a.pid, a.usename, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1::bigint % 4294967296 LIMIT 1
                """, [String(AdvisoryLock.migrations.rawValue)]).first).map { row in
                "pid \((try? row.string("pid")) ?? "?") (\((try? row.string("usename")) ?? "?"), \((try? row.string("application_name")) ?? ""))"
            } ?? "another session"
            guard ContinuousClock.now + .seconds(1) < deadline else {
                throw MigrationError(code: .lockUnavailable,
                    "the migration lock (advisory lock \(AdvisoryLock.migrations.rawValue)) is held by \(holder) for over \(Int(patience.seconds)) s")
            }
            if !logged {
                logger.warning("waiting for the migration lock: another migrate is running, or another session holds it",
                               metadata: ["holder": "\(holder)"])
                logged = true
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// The oldest open transactions of the database (other than this session), for an operator to find
    /// what a migration is waiting behind.
    static func openTransactions(_ connection: PostgresConnection) async -> String {
        let rows = try? await connection.query("""
            SELECT pid, usename, application_name, round(extract(epoch FROM now() - xact_start))::int AS age_s, state
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
            ORDER BY xact_start LIMIT 3
            """).rows
        let listed = rows?.map { row in
            "pid \((try? row.string("pid")) ?? "?") user \((try? row.string("usename")) ?? "?") app '\((try? row.string("application_name")) ?? "")' open \((try? row.string("age_s")) ?? "?") s (\((try? row.string("state")) ?? "?"))"
        } ?? []
        return listed.isEmpty ? "no other open transaction seen" : listed.joined(separator: "; ")
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
        /// Its locks stayed held by other sessions for longer than the migrator's patience.
        public static let lockUnavailable = Code("lockUnavailable")
    }
    public let code: Code
    public let message: String
    public init(code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
