/// Everything configuration says about which jobs may be sent: the rule of each channel and the
/// countries allowed. Read by triage; the channels' priorities are also published for the insert trigger.
public struct SendingRules: Sendable, Equatable {
    /// Every channel has a rule (the defaults unless configured).
    public var channels: [Channel: ChannelRule]
    /// Whether numbers outside mainland China (+86) may be sent at all.
    public var international = false
    /// With `international`, the country codes allowed; empty means all.
    public var allowedCountryCodes: [String] = []

    public init(defaults: ChannelRule = ChannelRule()) {
        channels = Dictionary(uniqueKeysWithValues: Channel.allCases.map { ($0, defaults) })
    }

    public subscript(channel: Channel) -> ChannelRule {
        get { channels[channel] ?? ChannelRule() }
        set { channels[channel] = newValue }
    }
}
