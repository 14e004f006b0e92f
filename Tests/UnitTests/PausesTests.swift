import Foundation
import SMSModel
import Testing

@Suite("Pauses")
struct PausesTests {
    let all = Pause(scope: .all, pausedBy: "ops", reason: "incident", since: 1)
    let login = Pause(scope: .channel(.login), pausedBy: "alice", since: 2, until: 100)

    @Test("a channel is held by its own pause or by the pause of every channel")
    func holding() {
        #expect(Pauses([login]).pause(of: .login) == login)
        #expect(Pauses([login]).pause(of: .register) == nil)
        #expect(Pauses([login, all]).pause(of: .login) == all, "the pause of all channels is named first")
        #expect(Pauses().pause(of: .login) == nil)
    }

    @Test("what began or changed since the last view, for the log")
    func added() {
        var changed = login
        changed.reason = "longer"
        #expect(Pauses([login, all]).added(since: Pauses([login])) == [all])
        #expect(Pauses([changed]).added(since: Pauses([login])) == [changed])
        #expect(Pauses([login]).added(since: Pauses([login, all])).isEmpty)
    }

    @Test("the scope is stored and encoded as `*` or the channel's name")
    func scopeForms() throws {
        #expect(Pause.Scope(stored: "*") == .all)
        #expect(Pause.Scope(stored: "CHANNEL_BIND_MFA") == .channel(.bindMFA))
        #expect(Pause.Scope(stored: "CHANNEL_SPAM") == nil)
        let json = String(decoding: try JSONEncoder().encode([login.scope, all.scope]), as: UTF8.self)
        #expect(json == #"["CHANNEL_LOGIN","*"]"#)
        #expect(try JSONDecoder().decode([Pause.Scope].self, from: Data(json.utf8)) == [.channel(.login), .all])
    }
}
