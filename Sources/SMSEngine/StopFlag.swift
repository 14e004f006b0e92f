import Synchronization

/// Set once when the daemon's stop begins. The housekeeping services (rescue, fraud watch, retention)
/// and LISTEN start no new round after it: their turn to stop comes after the drain and the writer, and
/// a round begun meanwhile against a database that does not answer would hold the stop up (libpq's
/// waits ignore task cancellation), where the old task group stopped them when the stop began.
package final class StopFlag: Sendable {
    private let flag = Atomic(false)

    package init() {}

    package var isSet: Bool { flag.load(ordering: .relaxed) }

    package func set() { flag.store(true, ordering: .relaxed) }
}
