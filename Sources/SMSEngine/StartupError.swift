/// Start-up failures, mapped to exit codes by the command line.
public struct StartupError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        private let name: String
        private init(_ name: String) { self.name = name }
        public static let databaseUnavailable = Code("databaseUnavailable")
        public static let apiUnavailable = Code("apiUnavailable")
        /// `database.url` leads to a connection pooler that shares server sessions between clients
        /// (PgBouncer's transaction or statement pooling): a configuration error (exit 78).
        public static let sharedSessions = Code("sharedSessions")
    }
    public let code: Code
    public let message: String
    public var description: String { message }
}
