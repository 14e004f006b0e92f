/// The fraud guard's settings (`fraud.*`): the rolling-hour limits the reservation enforces, and the
/// anomaly model `sms.fraud_evaluate` applies. All of them are live (a reload changes them for the
/// next batch and the next evaluation round).
package struct FraudSettings: Sendable, Equatable {
    /// `fraud.mode`.
    package enum Mode: String, Sendable, CaseIterable {
        /// Decide, count and stop.
        case enforce
        /// Decide and count everything; stop nothing (each would-be stop is logged and counted as
        /// `flagged`): to tune the limits before enforcing them.
        case monitor
        /// Skip the guard: nothing decided, nothing counted.
        case off
    }

    package var mode = Mode.enforce
    /// SMS per client_ip (IPv6: per /64), per user_ref, per number prefix and per country in a rolling
    /// hour; 0: no limit.
    package var perIPHour = 10
    package var perUserHour = 10
    package var perPrefixHour = 50
    package var perCountryHour = 0
    /// A prefix or country is anomalous when its last 10 minutes bring at least `anomalyMinRequests`
    /// requests, more than `anomalyFactor` times its baseline, with fewer than `anomalyMaxVerified`
    /// of them verified (where its baseline shows at least twice that share verified).
    package var anomalyFactor = 5.0
    package var anomalyMinRequests = 20
    package var anomalyMaxVerified = 0.2
    /// How long an anomaly block lasts after the traffic was last seen anomalous.
    package var blockDuration = Duration.seconds(30 * 60)
    /// The baselines' time constant, and the history a prefix or country needs before it can be
    /// blocked (until then the rolling limits alone hold it).
    package var baselineHours = 24.0
    /// A user_ref that verified a code within this many days passes anomaly blocks (not the limits); 0: none.
    package var trustVerifiedDays = 30

    package init() {}

    /// The limits in the order `sms.fraud_decide` takes them: ip, user, prefix, country.
    package var limits: [Int] { [perIPHour, perUserHour, perPrefixHour, perCountryHour] }
}
