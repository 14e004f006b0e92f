import PostgresClient

/// One SQL statement of the job store, as postgres-nio's `PreparedStatement`: the type holds its SQL,
/// its stored properties are its parameters, `bindings` lays them out in `$1…$n` order in one place
/// (next to the SQL), and `decode` reads its rows. Callers build a value and `run` it; the bench runs
/// the same values, so what it measures is the daemon's SQL with the daemon's bindings.
package protocol Statement: Sendable {
    associatedtype Output: Sendable
    static var sql: String { get }
    /// Run as a named prepared statement (planned once per connection): the statements the daemon
    /// runs all the time. The operators' one-off statements are not.
    static var isPrepared: Bool { get }
    /// The parameters, `$1` first, in PostgreSQL's text format (nil: NULL).
    var bindings: [String?] { get }
    func decode(_ rows: PostgresRows) throws -> Output
}

extension Statement {
    package static var isPrepared: Bool { true }
}

extension Statement where Output == Void {
    package func decode(_ rows: PostgresRows) throws {}
}

extension PostgresConnection {
    /// Runs `statement` and decodes its answer.
    @discardableResult
    package func run<S: Statement>(_ statement: S) async throws -> S.Output {
        try statement.decode(try await query(S.sql, statement.bindings, prepared: S.isPrepared))
    }
}

extension PostgresConnection.Session {
    /// BEGIN, then `statement`, in one round trip (`pipeline`): its answer, in a transaction left open.
    package func begin<S: Statement>(with statement: S) throws -> S.Output {
        let rows = try pipeline([.init("BEGIN"), .init(S.sql, statement.bindings, prepared: S.isPrepared)])
        return try statement.decode(rows[1])
    }

    /// `statement` alone (outside a transaction it commits on its own), from the connection's thread.
    package func run<S: Statement>(_ statement: S) throws -> S.Output {
        try statement.decode(try pipeline([.init(S.sql, statement.bindings, prepared: S.isPrepared)])[0])
    }

    /// `statement`, then COMMIT, in one round trip (`pipeline`): its answer once committed. A failure of
    /// the statement (`pipelineStep` 0) skipped the COMMIT: the transaction did not commit. A failed
    /// COMMIT throws as `commit()` does.
    package func runAndCommit<S: Statement>(_ statement: S) throws -> S.Output {
        let rows = try pipeline([.init(S.sql, statement.bindings, prepared: S.isPrepared), .init("COMMIT")])
        return try statement.decode(rows[0])
    }
}

extension PostgresRows {
    /// The one row a statement always returns.
    func single(_ what: String) throws -> PostgresRow {
        guard let row = first else { throw PostgresError(code: .badValue, message: "\(what) returned no row") }
        return row
    }
}

/// A statement that announces the rows it writes on `sms_job_events`, and can do the same work
/// without announcing.
package protocol AnnouncingStatement: Statement {
    var announces: Bool { get set }
}

extension PostgresConnection {
    /// Runs `statement`; if PostgreSQL refuses its NOTIFY at commit (SQLSTATE 54000, program limit
    /// exceeded: the notification queue is full because a listener stopped reading), runs it again
    /// without announcing: the rows' truth never waits on a listener. By SQLSTATE alone: the message is
    /// translated by the server's `lc_messages`, and one quiet retry is harmless whatever the cause.
    /// `queueFull` hears of each refusal.
    package func runAnnouncing<S: AnnouncingStatement>(
        _ statement: S, queueFull: (PostgresError) -> Void
    ) async throws
        -> S.Output
    {
        do {
            return try await run(statement)
        } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.programLimitExceeded {
            queueFull(error)
            var quiet = statement
            quiet.announces = false
            return try await run(quiet)
        }
    }
}
