/// The fraud guard's rules, as `sms.fraud_decide` names them (in messages, metrics and
/// `sms.fraud_counts`): the four rolling-hour limits, named after their configuration keys, and the two
/// anomaly blocks.
package enum FraudRule: String, Sendable, CaseIterable, Codable {
    case perIPHour = "per_ip_hour"
    case perUserHour = "per_user_hour"
    case perPrefixHour = "per_prefix_hour"
    case perCountryHour = "per_country_hour"
    case prefixBlock = "prefix_block"
    case countryBlock = "country_block"
}

/// What the fraud guard decided for one job.
package enum FraudDecision: String, Sendable, CaseIterable, Codable {
    /// Let through and counted.
    case pass
    /// On the allow-list: let through, not counted.
    case allowed
    /// Stopped (`enforce`): rejected, no call.
    case blocked
    /// Would have been stopped (`monitor`): let through and counted.
    case flagged
}
