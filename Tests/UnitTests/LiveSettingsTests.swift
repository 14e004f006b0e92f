import SMSModel
import Testing

@testable import SMSEngine

/// The engine's swappable settings: what a reload replaces, and what it cannot.
@Suite("Live settings")
struct LiveSettingsTests {
    @Test("a replacement bumps the generation; the same settings again do not")
    func generations() {
        let holder = LiveSettings.Holder(LiveSettings(Dispatcher.Configuration()))
        var configuration = Dispatcher.Configuration()
        configuration.admission.rateLimit = 7
        configuration.triage.rules[.login].enabled = false
        #expect(holder.replace(with: LiveSettings(configuration)))
        #expect(holder.snapshot.generation == 1 && holder.snapshot.settings.admission.rateLimit == 7)
        #expect(!holder.snapshot.settings.triage.rules[.login].enabled)
        #expect(!holder.replace(with: LiveSettings(configuration)))
        #expect(holder.snapshot.generation == 1)
    }

    @Test("the throttle window and the delivery policy stay as started (the writer and the rescuer hold them)")
    func pinned() {
        let holder = LiveSettings.Holder(LiveSettings(Dispatcher.Configuration()))
        var configuration = Dispatcher.Configuration()
        configuration.admission.throttleWindow = .seconds(5)
        configuration.triage.policy = .atMostOnce
        #expect(!holder.replace(with: LiveSettings(configuration)))
        #expect(holder.snapshot.settings.admission.throttleWindow == .seconds(60))
        #expect(holder.snapshot.settings.triage.policy == .atLeastOnce)
    }
}
