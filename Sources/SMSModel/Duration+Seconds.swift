extension Duration {
    /// This duration in seconds, for SQL parameters, log lines and arithmetic with database epochs.
    package var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// `seconds` as a duration, rounded to the microsecond (so 0.3 is 0.3 s, not 0.299999 s); NaN and
    /// negatives are zero.
    package static func seconds(double seconds: Double) -> Duration {
        guard seconds.isFinite, seconds > 0 else { return .zero }
        return .microseconds(Int64((min(seconds, 1e12) * 1_000_000).rounded()))
    }
}
