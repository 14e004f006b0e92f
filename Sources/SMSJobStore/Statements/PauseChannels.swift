import PostgresClient
import SMSModel

/// An operator's pause, through `sms.pause` (which records the database role, tells the pending jobs
/// and notifies the daemons). Pausing a scope again replaces its reason and end.
public struct PauseChannels: Statement {
    public var scope: Pause.Scope
    public var reason: String?
    /// nil: until resumed.
    public var duration: Duration?

    public init(scope: Pause.Scope, reason: String?, duration: Duration?) {
        self.scope = scope
        self.reason = reason
        self.duration = duration
    }

    public static let isPrepared = false
    public static let sql = """
        SELECT \(Pause.columns)
        FROM sms.pause($1, $2, CASE WHEN $3::float8 IS NULL THEN NULL ELSE make_interval(secs => $3::float8) END)
        """

    public var bindings: [String?] {
        [scope.argument, reason, duration.map { String($0.seconds) }]
    }

    public func decode(_ rows: PostgresRows) throws -> Pause {
        try Pause(row: rows.single("sms.pause"))
    }
}
