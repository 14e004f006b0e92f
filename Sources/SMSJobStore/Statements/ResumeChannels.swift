import PostgresClient
import SMSModel

/// Ends the pause of one channel, or every pause (`sms.resume`); returns how many it ended.
public struct ResumeChannels: Statement {
    public var scope: Pause.Scope

    public init(scope: Pause.Scope) { self.scope = scope }

    public static let isPrepared = false
    public static let sql = "SELECT sms.resume($1) AS ended"

    public var bindings: [String?] { [scope.argument] }

    public func decode(_ rows: PostgresRows) throws -> Int { try rows.single("sms.resume").requiredInt("ended") }
}
