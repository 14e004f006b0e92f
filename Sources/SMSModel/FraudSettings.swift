/// The fraud guard's settings (`fraud.*`): the rolling-hour limits the reservation enforces, and the
/// anomaly model `sms.fraud_evaluate` applies. All of them are live (a reload changes them for the
/// next batch and the next evaluation round).
public struct FraudSettings: Sendable, Equatable {
    /// `fraud.mode`.
    public enum Mode: String, Sendable, CaseIterable {
        /// Decide, count and stop.
        case enforce
        /// Decide and count everything; stop nothing (each would-be stop is logged and counted as
        /// `flagged`): to tune the limits before enforcing them.
        case monitor
        /// Skip the guard: nothing decided, nothing counted.
        case off
    }

    public var mode = Mode.enforce
    /// SMS per client_ip (IPv6: per /64), per user_ref, per number prefix and per country in a rolling
    /// hour; 0: no limit.
    public var perIPHour = 10
    public var perUserHour = 10
    public var perPrefixHour = 50
    public var perCountryHour = 0
    /// A prefix or country is anomalous when its last 10 minutes bring at least `anomalyMinRequests`
    /// requests, more than `anomalyFactor` times its baseline, with fewer than `anomalyMaxVerified`
    /// of them verified (where its baseline shows at least twice that share verified).
    public var anomalyFactor = 5.0
    public var anomalyMinRequests = 20
    public var anomalyMaxVerified = 0.2
    /// How long an anomaly block lasts after the traffic was last seen anomalous.
    public var blockDuration = Duration.seconds(30 * 60)
    /// The baselines' time constant, and the history a prefix or country needs before it can be
    /// blocked (until then the rolling limits alone hold it).
    public var baselineHours = 24.0
    /// A user_ref that verified a code within this many days passes anomaly blocks (not the limits); 0: none.
    public var trustVerifiedDays = 30

    public init() {}

    /// The limits in the order `sms.fraud_decide` takes them: ip, user, prefix, country.
    public var limits: [Int] { [perIPHour, perUserHour, perPrefixHour, perCountryHour] }
}
