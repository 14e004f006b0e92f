/// Everything configuration says about which jobs may be sent: the rule of each channel and the
/// countries allowed. Read by triage; the channels' priorities are also published for the insert trigger.
package struct SendingRules: Sendable, Equatable {
    /// Every channel has a rule (the defaults unless configured).
    package var channels: [Channel: ChannelRule]
    /// Whether numbers outside mainland China (+86) may be sent at all.
    package var international = false
    /// With `international`, the country codes allowed; empty means all.
    package var allowedCountryCodes: [String] = []

    package init(defaults: ChannelRule = ChannelRule()) {
        channels = Dictionary(uniqueKeysWithValues: Channel.allCases.map { ($0, defaults) })
    }

    package subscript(channel: Channel) -> ChannelRule {
        get { channels[channel] ?? ChannelRule() }
        set { channels[channel] = newValue }
    }
}
