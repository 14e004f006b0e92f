import PostgresClient
import SMSModel

/// The pauses in force (`sms.controls`, less those whose end has passed).
package struct ListPauses: Statement {
    package init() {}

    package static let sql = """
        SELECT \(Pause.columns)
        FROM sms.controls
        WHERE paused_until IS NULL OR paused_until > now()
        ORDER BY channel
        """

    package var bindings: [String?] { [] }

    package func decode(_ rows: PostgresRows) throws -> Pauses {
        Pauses(try rows.rows.map(Pause.init(row:)))
    }
}

extension Pause {
    /// The columns of an `sms.controls` row as `Pause(row:)` reads them (`sms.pause` returns one too).
    static let columns = """
        channel, paused_by, reason, extract(epoch FROM paused_since)::float8 AS since,
        extract(epoch FROM paused_until)::float8 AS until
        """

    init(row: PostgresRow) throws {
        let stored = try row.requiredString("channel")
        guard let scope = Scope(stored: stored) else {
            throw PostgresError(code: .badValue, message: "sms.controls holds an unknown channel \(stored)")
        }
        self.init(
            scope: scope, pausedBy: try row.requiredString("paused_by"), reason: try row.string("reason"),
            since: try row.requiredDouble("since"), until: try row.double("until"))
    }
}
