/// Settings made on a session right after it connects: limits, so that no call on it can wait forever
/// (a statement that runs too long, a lock an operator's open transaction holds, a transaction left
/// open), and whether PostgreSQL may JIT-compile its statements.
package struct SessionSettings: Sendable, Equatable {
    package var statementTimeout: Duration?
    package var lockTimeout: Duration?
    package var idleInTransactionTimeout: Duration?
    /// `jit = off` for the daemon: its short statements, run thousands of times, gain nothing from
    /// compiling, and any cost estimate past `jit_above_cost` (a table of millions of finished rows, a
    /// disabled plan node as in the claim, which also sets it) makes a statement compile on every run,
    /// half a second each.
    package var jit: Bool?
    /// How the session's statements are planned; nil leaves the server's settings.
    package var plans: Plans?
    /// `search_path = pg_catalog, pg_temp`: every name in the session's statements is written with its
    /// schema, and none may resolve to an object another role created in `public` (before PostgreSQL 15
    /// anyone could, and upgraded databases keep that): a `public.unnest(text[])` would otherwise run,
    /// with the session's rights, in place of pg_catalog's.
    package var pinnedSearchPath: Bool

    /// The planning a session's statements get.
    package enum Plans: Sendable, Equatable {
        /// The server's settings.
        case server
        /// For a session whose every statement finds a few rows by key (claim, reservation, write-back,
        /// thousands of times a minute): each statement, and each inside a PL/pgSQL function, is
        /// planned once per session (`plan_cache_mode = force_generic_plan`), not on every call (a
        /// custom plan each time was half the fraud guard's cost for a one-job batch); and a plan made
        /// while the table was young never stays a scan of the whole table as it grows
        /// (`enable_seqscan = off` makes an index the choice wherever one serves).
        case keyLookups
    }

    package init(
        statementTimeout: Duration? = nil, lockTimeout: Duration? = nil, idleInTransactionTimeout: Duration? = nil,
        jit: Bool? = nil, plans: Plans? = nil, pinnedSearchPath: Bool = false
    ) {
        self.statementTimeout = statementTimeout
        self.lockTimeout = lockTimeout
        self.idleInTransactionTimeout = idleInTransactionTimeout
        self.jit = jit
        self.plans = plans
        self.pinnedSearchPath = pinnedSearchPath
    }

    package static let none = SessionSettings()

    /// `SET ...;` statements for the simple query protocol, or nil when nothing is set.
    var script: String? {
        func milliseconds(_ duration: Duration) -> Int64 {
            max(1, duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
        }
        var statements: [String] = []
        if let statementTimeout { statements.append("SET statement_timeout = \(milliseconds(statementTimeout))") }
        if let lockTimeout { statements.append("SET lock_timeout = \(milliseconds(lockTimeout))") }
        if let idleInTransactionTimeout {
            statements.append("SET idle_in_transaction_session_timeout = \(milliseconds(idleInTransactionTimeout))")
        }
        if let jit { statements.append("SET jit = \(jit ? "on" : "off")") }
        if pinnedSearchPath { statements.append("SET search_path = pg_catalog, pg_temp") }
        switch plans {
        case .keyLookups?:
            statements.append("SET plan_cache_mode = force_generic_plan")
            statements.append("SET enable_seqscan = off")
        case .server?, nil:
            break
        }
        return statements.isEmpty ? nil : statements.joined(separator: "; ")
    }
}

extension PostgresConnection {
    /// Connects (see `connect(_:applicationName:)`) and applies `session`'s limits before returning.
    package static func connect(
        _ conninfo: String, applicationName: String = "sms-dispatcher",
        session: SessionSettings
    ) async throws -> PostgresConnection {
        let connection = try await connect(conninfo, applicationName: applicationName)
        guard let script = session.script else { return connection }
        do {
            try await connection.execute(script)
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }
}

extension PostgresError {
    /// What the caller should do about the error, decided once from its code and SQLSTATE.
    package enum Disposition: Sendable, Equatable {
        /// The connection is gone or unusable: reconnect, keep the work.
        case connection
        /// The server refused this time (read-only after a failover 25006, disk full 53100, a cancelled
        /// statement or timeout 57014, a lock timeout 55P03, a serialization failure or deadlock
        /// 40001/40P01, anything unknown): keep the work and try again later.
        case transient
        /// A value in the statement cannot be stored (SQLSTATE class 22 data exception, 23 integrity
        /// constraint violation): the same statement will fail again; only changing the data helps.
        case data
    }

    package var disposition: Disposition {
        if isConnectionProblem { return .connection }
        if let sqlState, sqlState.hasPrefix("22") || sqlState.hasPrefix("23") { return .data }
        return .transient
    }
}
