import PostgresClient
import SMSModel

/// Inserts one job through `sms.enqueue` (the producers' function: only producer columns, and a
/// repeated idempotency key returns the first job's id).
package struct EnqueueJob: Statement {
    package var channel: Channel
    package var phoneNumber: String
    package var countryCode: String?
    package var priority: Int?
    package var idempotencyKey: String?
    package var expiresIn: Duration?
    package var clientIP: String?
    package var userRef: String?

    package init(
        channel: Channel, phoneNumber: String, countryCode: String?, priority: Int?, idempotencyKey: String?,
        expiresIn: Duration?, clientIP: String? = nil, userRef: String? = nil
    ) {
        self.channel = channel
        self.phoneNumber = phoneNumber
        self.countryCode = countryCode
        self.priority = priority
        self.idempotencyKey = idempotencyKey
        self.expiresIn = expiresIn
        self.clientIP = clientIP
        self.userRef = userRef
    }

    package static let isPrepared = false
    package static let sql = """
        SELECT sms.enqueue(channel => $1, phone_number => $2, phone_country_code => $3,
                           priority => COALESCE($4::smallint, 0::smallint),
                           expires_at => CASE WHEN $6::float8 IS NULL THEN NULL
                                              ELSE now() + make_interval(secs => $6::float8) END,
                           idempotency_key => $5, client_ip => $7::inet, user_ref => $8) AS id
        """

    package var bindings: [String?] {
        [
            channel.rawValue, phoneNumber, countryCode, priority.map(String.init), idempotencyKey,
            expiresIn.map { String($0.seconds) }, clientIP, userRef,
        ]
    }

    /// The job's id (with an idempotency key seen before: the first job's).
    package func decode(_ rows: PostgresRows) throws -> Int64 {
        Int64(try rows.single("enqueue").requiredInt("id"))
    }
}
