extension Dispatcher {
    /// A reload (SIGHUP): puts `configuration`'s live settings (`LiveSettings`: sending rules,
    /// retries, caps, rate limit, breaker) in force without a restart. The claim loop picks them up at
    /// the start of its next batch; calls already out finish under the settings they started with. The
    /// breaker's new threshold and cool-down count from its next verdict. Everything else in
    /// `configuration` (connections, concurrency, intervals, the throttle window, the delivery policy)
    /// is what the running services were made with and is not read again: SMSConfiguration's
    /// `DaemonConfiguration.change(to:)` names those keys for a restart. Returns whether anything
    /// changed.
    @discardableResult
    package func apply(_ configuration: Configuration) -> Bool {
        let live = LiveSettings(configuration)
        // The breaker first: the batch that sees the new settings should see its new threshold too.
        if breaker.configuration != live.breaker { breaker.reconfigure(live.breaker) }
        return settings.replace(with: live)
    }
}
