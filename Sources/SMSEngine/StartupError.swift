/// Start-up failures, mapped to exit codes by the command line.
package struct StartupError: Error, CustomStringConvertible {
    package struct Code: Hashable, Sendable {
        private let name: String
        private init(_ name: String) { self.name = name }
        package static let databaseUnavailable = Code("databaseUnavailable")
        package static let apiUnavailable = Code("apiUnavailable")
        /// `database.url` leads to a connection pooler that shares server sessions between clients
        /// (PgBouncer's transaction or statement pooling): a configuration error (exit 78).
        package static let sharedSessions = Code("sharedSessions")
    }
    package let code: Code
    package let message: String
    package var description: String { message }
}
