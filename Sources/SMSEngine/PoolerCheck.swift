import PostgresClient

/// Whether `database.url` leads to PostgreSQL sessions of the daemon's own. The daemon keeps state in
/// each session (prepared statements, LISTEN, its limits and search_path): behind a pooler that hands a
/// server session to another client between transactions (PgBouncer's `pool_mode = transaction` or
/// `statement`), its statements land in other clients' sessions (`prepared statement "smsd_1" already
/// exists`) and it would retry for ever, claiming nothing. Session pooling (`pool_mode = session`) keeps
/// a server session per client connection and works.
///
/// A pooler answers BackendKeyData with a process id of its own, unlike PostgreSQL's
/// `pg_backend_pid()`: that tells one is there. Then two client connections ask for their server's
/// process id in turn, outside a transaction: a pooler that shares sessions gives the second the server
/// the first has just released (PgBouncer reuses the most recently released one first), or moves the
/// first to another server. A session pooler never does either.
enum PoolerCheck {
    static func verify(_ url: String) async throws {
        let first = try await connect(url)
        defer { Task { await first.close() } }
        let own = try await serverPID(first)
        guard try await first.reportedBackendPID() != own else { return }
        let second = try await connect(url)
        defer { Task { await second.close() } }
        // Three rounds: a pooler that hands out servers round-robin instead of last-released-first may
        // give the second connection another idle server once, but not keep the first on its own.
        for _ in 0..<3 {
            let mine = try await serverPID(first)
            let theirs = try await serverPID(second)
            if mine != own || theirs == mine {
                throw StartupError(
                    code: .sharedSessions,
                    message: """
                        database.url leads to a connection pooler that shares PostgreSQL sessions between clients \
                        (PgBouncer's pool_mode = transaction or statement): the daemon keeps prepared statements, \
                        LISTEN and its session settings in its sessions, which such a pooler hands to other clients. \
                        Point database.url at PostgreSQL itself, or at a pool with pool_mode = session (producers \
                        may keep using transaction pooling)
                        """)
            }
        }
    }

    private static func connect(_ url: String) async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(url, applicationName: "sms-dispatcher pooler check")
        } catch {
            throw StartupError(code: .databaseUnavailable, message: "cannot connect to PostgreSQL: \(error)")
        }
    }

    private static func serverPID(_ connection: PostgresConnection) async throws -> Int {
        guard let pid = try await connection.query("SELECT pg_backend_pid() AS pid").first?.int("pid") else {
            throw StartupError(code: .databaseUnavailable, message: "SELECT pg_backend_pid() answered no row")
        }
        return pid
    }
}
