import PostgresClient
import SMSModel

/// An operator's pause, through `sms.pause` (which records the database role, tells the pending jobs
/// and notifies the daemons). Pausing a scope again replaces its reason and end.
package struct PauseChannels: Statement {
    package var scope: Pause.Scope
    package var reason: String?
    /// nil: until resumed.
    package var duration: Duration?

    package init(scope: Pause.Scope, reason: String?, duration: Duration?) {
        self.scope = scope
        self.reason = reason
        self.duration = duration
    }

    package static let isPrepared = false
    package static let sql = """
        SELECT \(Pause.columns)
        FROM sms.pause($1, $2, CASE WHEN $3::float8 IS NULL THEN NULL ELSE make_interval(secs => $3::float8) END)
        """

    package var bindings: [String?] {
        [scope.argument, reason, duration.map { String($0.seconds) }]
    }

    package func decode(_ rows: PostgresRows) throws -> Pause {
        try Pause(row: rows.single("sms.pause"))
    }
}
