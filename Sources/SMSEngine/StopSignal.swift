import Synchronization

/// Set once a graceful shutdown begins: the services that only make sense while claiming (LISTEN,
/// rescue, retention) stop; the heartbeat and the writer carry on until the drain is over.
final class StopSignal: Sendable {
    private let stopped = Atomic(false)
    func stop() { stopped.store(true, ordering: .relaxed) }
    var isStopped: Bool { stopped.load(ordering: .relaxed) }
}
