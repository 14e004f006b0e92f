import CLibPQ
import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A notification received on a LISTEN channel.
package struct PostgresNotification: Sendable, Equatable {
    package let channel: String
    package let payload: String
    package let backendPID: Int32
}

/// One libpq connection. libpq blocks, so every call on this connection runs on the connection's own
/// single-threaded `NIOThreadPool`: never on Swift's cooperative pool, and one call at a time (libpq
/// connections are not safe for concurrent use). `connection` is only ever touched on that thread,
/// which is what makes the `@unchecked Sendable` sound.
package final class PostgresConnection: @unchecked Sendable {
    private let thread: NIOThreadPool
    private var connection: OpaquePointer?
    /// SQL text → prepared statement name, for `query(_:_:prepared: true)`. Lives and dies with the
    /// server session, which is this object's.
    private var preparedStatements: [String: String] = [:]

    private init(thread: NIOThreadPool, connection: OpaquePointer) {
        self.thread = thread
        self.connection = connection
    }

    /// Opens a connection from a libpq conninfo string or URI. `applicationName` shows in
    /// `pg_stat_activity`; a `connect_timeout` of 10 s applies unless the conninfo sets one.
    package static func connect(
        _ conninfo: String, applicationName: String = "sms-dispatcher"
    ) async throws
        -> PostgresConnection
    {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        do {
            let connection = try await thread.runIfActive { () throws -> UnsafeSendable<OpaquePointer> in
                try UnsafeSendable(Self.open(conninfo, applicationName: applicationName))
            }
            return PostgresConnection(thread: thread, connection: connection.value)
        } catch {
            try? await thread.shutdownGracefully()
            throw error
        }
    }

    private static func open(_ conninfo: String, applicationName: String) throws -> OpaquePointer {
        if let error = ConnInfo.parseError(conninfo) {
            throw PostgresError(code: .connectionFailed, message: "invalid database URL: \(error)")
        }
        // Later keywords override earlier ones, and `dbname` is expanded as a full conninfo/URI
        // (expand_dbname = 1), so the caller's string wins over these defaults. Keepalives and
        // tcp_user_timeout: a peer that vanished silently (no FIN, no RST) must fail a blocked libpq call
        // within 15 s (keepalives: 5 s idle, then 3 probes 2 s apart; unacknowledged data: 15 s), half of
        // systemd's WatchdogSec (30 s), which a loop blocked that long must not starve; the kernel alone
        // would wait ~2 h for an idle socket (first keepalive probe) and ~15 min for unacknowledged data.
        // gssencmode=disable unless the caller asks for GSS: libpq's default ("prefer") calls into
        // Kerberos on every connect, and Kerberos's library aborted a process that was connecting
        // while it exited (k5_mutex_lock assertion); sites using GSS say so in their URL.
        let keywords = [
            "connect_timeout", "fallback_application_name", "keepalives", "keepalives_idle",
            "keepalives_interval", "keepalives_count", "tcp_user_timeout", "gssencmode", "dbname",
        ]
        let values = ["10", applicationName, "1", "5", "2", "3", "15000", "disable", conninfo]
        let conn: OpaquePointer? = withCStrings(keywords) { keywordPointers in
            withCStrings(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let conn else {
            throw PostgresError(code: .connectionFailed, message: "libpq could not allocate a connection")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = ConnInfo.redact(Self.errorMessage(conn), conninfo: conninfo)
            PQfinish(conn)
            throw PostgresError(code: .connectionFailed, message: message)
        }
        // Notices ("relation already exists, skipping") would go to stderr; they carry nothing we act on.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        return conn
    }

    deinit {
        // Nobody else can hold this object any more, so finishing here, off the thread, is safe.
        if let connection { PQfinish(connection) }
        thread.shutdownGracefully { _ in }
    }

    /// Closes the connection. Later calls throw `.closed`.
    package func close() async {
        _ = try? await thread.runIfActive { [self] in
            if let connection {
                PQfinish(connection)
                self.connection = nil
            }
        }
        try? await thread.shutdownGracefully()
    }

    /// Runs one parameterised statement (`$1`, `$2`, … in text format; nil is NULL) and returns its rows.
    /// With `prepared: true` the statement is prepared once per connection and executed by name after.
    @discardableResult
    package func query(
        _ sql: String, _ parameters: [String?] = [], prepared: Bool = false
    ) async throws
        -> PostgresRows
    {
        try await run { [self] conn in
            try withOptionalCStrings(parameters) { parameterPointers -> PostgresRows in
                let count = Int32(parameters.count)
                let result: OpaquePointer?
                if prepared {
                    let name = try preparedName(for: sql, parameterCount: count, conn: conn)
                    result = PQexecPrepared(conn, name, count, parameterPointers, nil, nil, 0)
                } else {
                    result = PQexecParams(conn, sql, count, nil, parameterPointers, nil, nil, 0)
                }
                return try Self.consume(result, conn: conn)
            }
        }
    }

    /// Runs a script of one or more statements without parameters (the simple query protocol):
    /// migrations, BEGIN, LISTEN. (COMMIT: `commit()`, which checks that it committed.)
    package func execute(_ sql: String) async throws {
        try await run { conn in
            _ = try Self.consume(PQexec(conn, sql), conn: conn)
        }
    }

    /// COMMIT, and throws unless the server says it committed: a transaction that failed is rolled back
    /// by COMMIT without an error (its tag reads ROLLBACK), and nothing may act as if it were durable.
    package func commit() async throws {
        try await run { conn in try Self.commit(on: conn) }
    }

    /// COMMIT alone, outside pipeline mode: its error carries no `pipelineStep` (a step 0 would read as
    /// "a statement before the COMMIT failed, so it was skipped": certain, where a COMMIT's own error
    /// other than ROLLBACK may have committed).
    private static func commit(on conn: OpaquePointer) throws {
        guard let result = PQexec(conn, "COMMIT") else {
            throw PostgresError(
                code: PQstatus(conn) == CONNECTION_BAD ? .connectionLost : .queryFailed,
                message: Self.errorMessage(conn))
        }
        let tag = String(cString: PQcmdStatus(result))
        _ = try Self.consume(result, conn: conn)
        guard tag == "COMMIT" else {
            throw PostgresError(
                code: .queryFailed, sqlState: PostgresError.SQLState.inFailedTransaction,
                message: "COMMIT answered \(tag): the transaction was rolled back")
        }
    }

    /// LISTEN on a channel. Notifications are then collected by `waitForNotifications`.
    package func listen(_ channel: String) async throws {
        let quoted = "\"" + channel.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        try await execute("LISTEN \(quoted)")
    }

    /// Waits up to `timeout` for notifications on this connection's LISTEN channels and returns what
    /// arrived (possibly nothing). Blocks only this connection's thread.
    package func waitForNotifications(timeout: Duration) async throws -> [PostgresNotification] {
        let milliseconds = Int32(
            clamping: timeout.components.seconds * 1000
                + timeout.components.attoseconds / 1_000_000_000_000_000)
        return try await run { conn in
            var received = try Self.drainNotifications(conn)
            if !received.isEmpty { return received }
            var descriptor = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
            guard descriptor.fd >= 0 else {
                throw PostgresError(code: .connectionLost, message: "connection has no socket")
            }
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 && errno != EINTR {
                throw PostgresError(code: .connectionLost, message: "poll failed: errno \(errno)")
            }
            received = try Self.drainNotifications(conn)
            return received
        }
    }

    /// The server process id libpq was given when it connected (BackendKeyData). A connection pooler in
    /// between (PgBouncer) gives its own, so it differs from what `SELECT pg_backend_pid()` answers.
    package func reportedBackendPID() async throws -> Int32 {
        try await run { conn in PQbackendPID(conn) }
    }

    /// The value libpq uses for one of this connection's options (`PQconninfo`), e.g. `tcp_user_timeout`
    /// or `keepalives`; nil when unset. Never a password. (`SHOW tcp_user_timeout` would show the
    /// server's own socket setting, not this client's.)
    package func connectionOption(_ keyword: String) async throws -> String? {
        guard keyword != "password", keyword != "sslpassword" else { return nil }
        return try await run { conn -> String? in
            guard let options = PQconninfo(conn) else { return nil }
            defer { PQconninfoFree(options) }
            var option = options
            while let name = option.pointee.keyword {
                if String(cString: name) == keyword {
                    // dispchar "*": libpq's own mark for a password field.
                    if let display = option.pointee.dispchar, String(cString: display) == "*" { return nil }
                    return option.pointee.val.map { String(cString: $0) }
                }
                option += 1
            }
            return nil
        }
    }

    /// One query of a `pipeline`.
    package struct PipelinedQuery: Sendable {
        package var sql: String
        package var parameters: [String?]
        /// Prepared once per connection and executed by name after (as `query(_:_:prepared:)`).
        package var prepared: Bool

        package init(_ sql: String, _ parameters: [String?] = [], prepared: Bool = false) {
            self.sql = sql
            self.parameters = parameters
            self.prepared = prepared
        }
    }

    /// Sends `queries` together and waits once (libpq's pipeline mode): one round trip, and one trip to
    /// this connection's thread, instead of one each. Returns each query's rows, in order. The first
    /// that fails throws its error, with its `pipelineStep`; PostgreSQL skips the rest (inside a
    /// transaction block the transaction is then failed, as after any error). A `COMMIT` among them is
    /// checked as `commit()` checks it. A connection lost meanwhile throws `connectionLost`: any query
    /// sent may have run (a COMMIT too).
    package func pipeline(_ queries: [PipelinedQuery]) async throws -> [PostgresRows] {
        try await run { [self] conn in try pipeline(queries, on: conn) }
    }

    /// The connection, lent to code that runs on its thread (`withSession`): its statements run at
    /// once, blocking that thread. Valid only inside that code; never kept.
    package struct Session {
        fileprivate let connection: PostgresConnection
        fileprivate let conn: OpaquePointer

        /// As `PostgresConnection.pipeline`, from the connection's thread.
        package func pipeline(_ queries: [PipelinedQuery]) throws -> [PostgresRows] {
            try connection.pipeline(queries, on: conn)
        }

        /// As `PostgresConnection.commit()`, from the connection's thread.
        package func commit() throws {
            try PostgresConnection.commit(on: conn)
        }
    }

    /// Runs `body` on the connection's thread with the connection lent to it: several round trips and
    /// the (pure, quick) work between them in one trip there and back, where each `await` of a
    /// statement is one each way (a thread handing over to another: ~0.1 ms on a busy two-core host).
    package func withSession<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        try await run { [self] conn in try body(Session(connection: self, conn: conn)) }
    }

    private func pipeline(_ queries: [PipelinedQuery], on conn: OpaquePointer) throws -> [PostgresRows] {
        // Outside pipeline mode: PQprepare waits for its answer.
        let names = try queries.map { query -> String? in
            query.prepared ? try preparedName(for: query.sql, parameterCount: Int32(query.parameters.count), conn: conn) : nil
        }
        guard PQenterPipelineMode(conn) == 1 else {
            throw PostgresError(code: .queryFailed, message: "cannot enter pipeline mode: \(Self.errorMessage(conn))")
        }
        defer { PQexitPipelineMode(conn) }
        for (step, query) in queries.enumerated() {
            let sent = withOptionalCStrings(query.parameters) { pointers -> Int32 in
                let count = Int32(query.parameters.count)
                if let name = names[step] { return PQsendQueryPrepared(conn, name, count, pointers, nil, nil, 0) }
                return PQsendQueryParams(conn, query.sql, count, nil, pointers, nil, nil, 0)
            }
            guard sent == 1 else { throw Self.lost(conn, step: step) }
        }
        guard PQpipelineSync(conn) == 1, PQflush(conn) == 0 else { throw Self.lost(conn, step: 0) }
        var rows: [PostgresRows] = []
        var failure: PostgresError? = nil
        for (step, query) in queries.enumerated() {
            guard let result = PQgetResult(conn) else { throw Self.lost(conn, step: step) }
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                PQclear(result)  // skipped after an earlier failure
            } else {
                let tag = String(cString: PQcmdStatus(result))
                do {
                    rows.append(try Self.consume(result, conn: conn))
                    if query.sql == "COMMIT" && tag != "COMMIT" && failure == nil {
                        failure = PostgresError(
                            code: .queryFailed, sqlState: PostgresError.SQLState.inFailedTransaction,
                            message: "COMMIT answered \(tag): the transaction was rolled back",
                            pipelineStep: step)
                    }
                } catch var error as PostgresError {
                    error.pipelineStep = step
                    if failure == nil { failure = error }
                    if error.isConnectionProblem { throw error }
                }
            }
            // Each query's results end with a NULL.
            while let extra = PQgetResult(conn) { PQclear(extra) }
        }
        guard let sync = PQgetResult(conn) else { throw Self.lost(conn, step: queries.count - 1) }
        let status = PQresultStatus(sync)
        PQclear(sync)
        guard status == PGRES_PIPELINE_SYNC else { throw Self.lost(conn, step: queries.count - 1) }
        if let failure { throw failure }
        return rows
    }

    // MARK: - On the connection's thread only

    private static func lost(_ conn: OpaquePointer, step: Int) -> PostgresError {
        PostgresError(
            code: PQstatus(conn) == CONNECTION_BAD ? .connectionLost : .queryFailed,
            message: errorMessage(conn), pipelineStep: step)
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        do {
            return try await thread.runIfActive { [self] in
                guard let connection else {
                    throw PostgresError(code: .closed, message: "connection is closed")
                }
                return try body(connection)
            }
        } catch let error as PostgresError {
            throw error
        } catch {
            // NIOThreadPoolError.ThreadPoolInactive: the connection was closed under us.
            throw PostgresError(code: .closed, message: "connection is closed (\(error))")
        }
    }

    private func preparedName(for sql: String, parameterCount: Int32, conn: OpaquePointer) throws -> String {
        if let name = preparedStatements[sql] { return name }
        let name = "smsd_\(preparedStatements.count + 1)"
        _ = try Self.consume(PQprepare(conn, name, sql, parameterCount, nil), conn: conn)
        preparedStatements[sql] = name
        return name
    }

    private static func drainNotifications(_ conn: OpaquePointer) throws -> [PostgresNotification] {
        guard PQconsumeInput(conn) == 1 else {
            throw PostgresError(code: .connectionLost, message: errorMessage(conn))
        }
        var received: [PostgresNotification] = []
        while let notify = PQnotifies(conn) {
            received.append(
                PostgresNotification(
                    channel: String(cString: notify.pointee.relname),
                    payload: String(cString: notify.pointee.extra),
                    backendPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return received
    }

    /// Turns a `PGresult` into rows or an error, and always clears it.
    private static func consume(_ result: OpaquePointer?, conn: OpaquePointer) throws -> PostgresRows {
        guard let result else {
            throw PostgresError(
                code: PQstatus(conn) == CONNECTION_BAD ? .connectionLost : .queryFailed,
                message: errorMessage(conn))
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            break
        default:
            let sqlState = field(result, "C")
            let primary = field(result, "M") ?? errorMessage(conn)
            let lost = PQstatus(conn) == CONNECTION_BAD
            throw PostgresError(
                code: lost ? .connectionLost : .queryFailed,
                sqlState: sqlState,
                message: primary,
                detail: field(result, "D"))
        }
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        var columns: [String] = []
        columns.reserveCapacity(columnCount)
        var index: [String: Int] = [:]
        for column in 0..<columnCount {
            let name = String(cString: PQfname(result, Int32(column)))
            columns.append(name)
            if index[name] == nil { index[name] = column }
        }
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, Int32(row), Int32(column))))
                }
            }
            rows.append(PostgresRow(columnIndex: index, values: values))
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresRows(columns: columns, rows: rows, affectedRows: affected)
    }

    private static func field(_ result: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        guard let pointer = PQresultErrorField(result, Int32(UInt8(ascii: code))) else { return nil }
        return String(cString: pointer)
    }

    private static func errorMessage(_ conn: OpaquePointer) -> String {
        guard let pointer = PQerrorMessage(conn) else { return "unknown libpq error" }
        let text = String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "unknown libpq error" : text
    }
}

/// Carries a value libpq hands out across the thread hop when the value is confined by construction.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

private func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) throws -> R) rethrows -> R {
    try withOptionalCStrings(strings.map { Optional($0) } + [nil]) { try body($0) }
}

/// Copies each string to a C string for the duration of `body`; nil stays a null pointer (SQL NULL).
private func withOptionalCStrings<R>(
    _ strings: [String?], _ body: ([UnsafePointer<CChar>?]) throws -> R
) rethrows
    -> R
{
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { for copy in copies { free(copy) } }
    return try body(copies.map { UnsafePointer($0) })
}
