/// What configuration says about one channel. `channels.defaults.*` applies to every channel,
/// `channels.CHANNEL_X.*` overrides it for one.
package struct ChannelRule: Sendable, Equatable {
    /// A disabled channel's jobs are `rejected`, saying so.
    package var enabled = true
    /// Priority given to jobs inserted with priority 0.
    package var priority = 0
    /// How long after `created_at` a job is `expired` instead of sent (codes go stale); zero: never.
    /// Every GenAuth channel sends a verification code, so all default to 10 minutes.
    package var ttl = Duration.seconds(600)
    /// Caps the job's own `max_attempts`; nil: the job's value.
    package var maxAttempts: Int? = nil
    /// Several jobs for one phone and channel: send the newest, supersede the others.
    package var coalesce = true

    package init() {}
}
