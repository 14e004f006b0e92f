import PostgresClient
import SMSModel

/// Inserts one job; with an idempotency key, a repeat returns the first insert's id.
public struct EnqueueJob: Statement {
    public var channel: Channel
    public var phoneNumber: String
    public var countryCode: String?
    public var priority: Int?
    public var idempotencyKey: String?
    public var expiresIn: Duration?

    public init(channel: Channel, phoneNumber: String, countryCode: String?, priority: Int?, idempotencyKey: String?,
                expiresIn: Duration?) {
        self.channel = channel
        self.phoneNumber = phoneNumber
        self.countryCode = countryCode
        self.priority = priority
        self.idempotencyKey = idempotencyKey
        self.expiresIn = expiresIn
    }

    public static let isPrepared = false
    public static let sql = """
        WITH inserted AS (
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code, priority, idempotency_key, expires_at)
            VALUES ($1, $2, $3, COALESCE($4::smallint, 0), $5,
                    CASE WHEN $6::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $6::float8) END)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
        )
        SELECT id, true AS created FROM inserted
        UNION ALL
        SELECT id, false AS created FROM sms.jobs WHERE idempotency_key = $5 AND NOT EXISTS (SELECT 1 FROM inserted)
        """

    public var bindings: [String?] {
        [channel.rawValue, phoneNumber, countryCode, priority.map(String.init), idempotencyKey,
         expiresIn.map { String($0.seconds) }]
    }

    /// The job's id, and whether this call created it (false: the idempotency key's earlier job).
    public func decode(_ rows: PostgresRows) throws -> (id: Int64, created: Bool) {
        let row = try rows.single("enqueue")
        return (Int64(try row.requiredInt("id")), try row.bool("created") ?? true)
    }
}
