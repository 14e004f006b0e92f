import SMSModel
import Testing

@Suite("Channel")
struct ChannelTests {
    @Test func theElevenChannelsParseAndNothingElse() {
        #expect(Channel.allCases.count == 11)
        for channel in Channel.allCases {
            #expect((try? Channel.parse(channel.rawValue).get()) == channel)
        }
        guard case .failure(let error) = Channel.parse("CHANNEL_SPAM") else {
            Issue.record("unknown channel accepted")
            return
        }
        #expect(error.message.contains("CHANNEL_SPAM") && error.message.contains("CHANNEL_LOGIN"))
        #expect((try? Channel.parse("channel_login").get()) == nil)
    }
}
