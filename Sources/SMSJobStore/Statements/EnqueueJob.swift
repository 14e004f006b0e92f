import PostgresClient
import SMSModel

/// Inserts one job through `sms.enqueue` (the producers' function: only producer columns, and a
/// repeated idempotency key returns the first job's id).
public struct EnqueueJob: Statement {
    public var channel: Channel
    public var phoneNumber: String
    public var countryCode: String?
    public var priority: Int?
    public var idempotencyKey: String?
    public var expiresIn: Duration?
    public var clientIP: String?
    public var userRef: String?

    public init(channel: Channel, phoneNumber: String, countryCode: String?, priority: Int?, idempotencyKey: String?,
                expiresIn: Duration?, clientIP: String? = nil, userRef: String? = nil) {
        self.channel = channel
        self.phoneNumber = phoneNumber
        self.countryCode = countryCode
        self.priority = priority
        self.idempotencyKey = idempotencyKey
        self.expiresIn = expiresIn
        self.clientIP = clientIP
        self.userRef = userRef
    }

    public static let isPrepared = false
    public static let sql = """
        SELECT sms.enqueue(channel => $1, phone_number => $2, phone_country_code => $3,
                           priority => COALESCE($4::smallint, 0::smallint),
                           expires_at => CASE WHEN $6::float8 IS NULL THEN NULL
                                              ELSE now() + make_interval(secs => $6::float8) END,
                           idempotency_key => $5, client_ip => $7::inet, user_ref => $8) AS id
        """

    public var bindings: [String?] {
        [channel.rawValue, phoneNumber, countryCode, priority.map(String.init), idempotencyKey,
         expiresIn.map { String($0.seconds) }, clientIP, userRef]
    }

    /// The job's id (with an idempotency key seen before: the first job's).
    public func decode(_ rows: PostgresRows) throws -> Int64 {
        Int64(try rows.single("enqueue").requiredInt("id"))
    }
}
