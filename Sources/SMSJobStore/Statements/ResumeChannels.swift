import PostgresClient
import SMSModel

/// Ends the pause of one channel, or every pause (`sms.resume`); returns how many it ended.
package struct ResumeChannels: Statement {
    package var scope: Pause.Scope

    package init(scope: Pause.Scope) { self.scope = scope }

    package static let isPrepared = false
    package static let sql = "SELECT sms.resume($1) AS ended"

    package var bindings: [String?] { [scope.argument] }

    package func decode(_ rows: PostgresRows) throws -> Int { try rows.single("sms.resume").requiredInt("ended") }
}
