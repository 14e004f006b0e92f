import PostgresClient
import SMSModel

/// Publishes the channels' configured default priorities (for the insert trigger), TTLs (for the
/// expiry of jobs held by a pause) and attempt caps (for the lease rescue) to `sms.channel_settings`.
package struct PublishChannelSettings: Statement {
    package var rules: SendingRules

    package init(rules: SendingRules) { self.rules = rules }

    package static let isPrepared = false
    package static let sql = """
        INSERT INTO sms.channel_settings (channel, default_priority, ttl_seconds, max_attempts)
        SELECT * FROM unnest($1::text[], $2::smallint[], $3::float8[], $4::smallint[])
        ON CONFLICT (channel) DO UPDATE SET default_priority = EXCLUDED.default_priority,
            ttl_seconds = EXCLUDED.ttl_seconds, max_attempts = EXCLUDED.max_attempts, updated_at = now()
        """

    package var bindings: [String?] {
        let channels = Channel.allCases
        return [
            PostgresArray.literal(channels.map { Optional($0.rawValue) }),
            PostgresArray.literal(channels.map { rules[$0].priority }),
            PostgresArray.literal(channels.map { Optional(rules[$0].ttl.seconds) }),
            PostgresArray.literal(channels.map { rules[$0].maxAttempts }),
        ]
    }
}
