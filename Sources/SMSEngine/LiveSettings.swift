import SMSModel
import Synchronization

/// The engine's settings a reload (SIGHUP) may change while it runs: the sending rules, retries,
/// caps, rate limit and breaker. Which configuration keys are live is decided in SMSConfiguration
/// (`DaemonConfiguration+Keys.swift`); this is where the engine reads them.
///
/// The claim loop takes a snapshot at the start of each batch and hands it to the pure deciders
/// (`Triage`, `Admission`), which never look anything up themselves; a batch's calls keep the triage
/// they started with, so a job in flight finishes under the settings it was sent under. The throttle
/// window and the delivery policy travel in here too but stay as they were at start (see `Holder`).
package struct LiveSettings: Sendable, Equatable {
    package var triage: Triage.Configuration
    package var admission: Admission.Configuration
    package var breaker: CircuitBreaker.Configuration

    package init(_ configuration: Dispatcher.Configuration) {
        triage = configuration.triage
        admission = configuration.admission
        breaker = configuration.breaker
    }

    /// The current settings behind a lock, and a generation that counts the replacements, so a
    /// reader can tell cheaply whether anything changed since it last looked.
    final class Holder: Sendable {
        struct Snapshot: Sendable {
            let generation: Int
            let settings: LiveSettings
        }

        private let current: Mutex<Snapshot>

        init(_ settings: LiveSettings) {
            current = Mutex(Snapshot(generation: 0, settings: settings))
        }

        var snapshot: Snapshot { current.withLock { $0 } }

        /// Puts `settings` in force for the next batch. The throttle window and the delivery policy are
        /// kept: the writer stamps windows and the rescuer applies the policy with the values they
        /// were started with, and every user of each must agree (restart-only keys, so a reload never
        /// brings a different one anyway). Returns whether anything changed.
        @discardableResult
        func replace(with settings: LiveSettings) -> Bool {
            current.withLock { snapshot in
                var settings = settings
                settings.admission.throttleWindow = snapshot.settings.admission.throttleWindow
                settings.triage.policy = snapshot.settings.triage.policy
                guard settings != snapshot.settings else { return false }
                snapshot = Snapshot(generation: snapshot.generation + 1, settings: settings)
                return true
            }
        }
    }
}
