/// An error from the PostgreSQL wrapper. Follows swift-service-lifecycle's style: a struct with a `Code`,
/// so callers can switch on what happened without parsing messages.
package struct PostgresError: Error, Sendable, CustomStringConvertible {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        package var description: String { name }

        /// Could not open a connection (bad conninfo, server down, authentication refused).
        package static let connectionFailed = Code("connectionFailed")
        /// The connection broke during or before a command; reconnecting may help.
        package static let connectionLost = Code("connectionLost")
        /// The server rejected the command; `sqlState` says why.
        package static let queryFailed = Code("queryFailed")
        /// The connection was closed by its owner.
        package static let closed = Code("closed")
        /// A value in a result could not be read as the requested type.
        package static let badValue = Code("badValue")
    }

    package var code: Code
    /// SQLSTATEs the daemon acts on by name.
    package enum SQLState {
        /// program_limit_exceeded: among others, what a NOTIFY gets at commit when the notification
        /// queue is full.
        package static let programLimitExceeded = "54000"
        /// in_failed_transaction: `PostgresConnection.commit()` when COMMIT rolled the transaction back.
        package static let inFailedTransaction = "25P02"
        /// lock_not_available: a lock wait ran past `lock_timeout` (or NOWAIT found it held).
        package static let lockNotAvailable = "55P03"
    }
    /// The five-character SQLSTATE, when the server sent one (e.g. `23505` unique violation).
    package var sqlState: String?
    package var message: String
    package var detail: String?
    /// In `PostgresConnection.pipeline`: which query (0-based) failed; the ones after it did not run.
    package var pipelineStep: Int?

    package init(code: Code, sqlState: String? = nil, message: String, detail: String? = nil, pipelineStep: Int? = nil) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.pipelineStep = pipelineStep
    }

    /// Whether the failure is about the connection rather than the statement: the caller should reconnect.
    package var isConnectionProblem: Bool {
        code == .connectionLost || code == .connectionFailed || code == .closed
            || (sqlState.map { $0.hasPrefix("08") || $0 == "57P01" || $0 == "57P02" || $0 == "57P03" } ?? false)
    }

    package var description: String {
        var text = "PostgreSQL \(code)"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        // A data or constraint error's DETAIL quotes the row or key ("Failing row contains (…)", with the
        // phone number in full): kept in `detail` for callers, never in a text that reaches a log.
        let quotesValues = sqlState.map { $0.hasPrefix("22") || $0.hasPrefix("23") } ?? false
        if let detail, !detail.isEmpty, !quotesValues { text += " (\(detail))" }
        return text
    }
}
