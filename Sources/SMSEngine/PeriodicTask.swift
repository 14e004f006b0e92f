import ServiceLifecycle
import PostgresClient

/// The shape the engine's periodic services share (heartbeat, lease rescuer, retention): on a session
/// of their own, do one round of work, wait, again; a failed round drops the session and the next
/// one reconnects with backoff. Ends when the task is cancelled or `shouldContinue` says so.
enum PeriodicTask {
    /// `body` does one round; it may return a shorter (or longer) wait before the next one.
    static func run(
        session: inout DatabaseSession, every interval: Duration, waitFirst: Bool = false,
        while shouldContinue: () -> Bool = { true },
        _ body: (PostgresConnection) async throws -> Duration?
    ) async {
        var wait = waitFirst ? interval : .zero
        while !Task.isCancelled && shouldContinue() {
            if wait > .zero {
                try? await Task.sleep(for: wait)
                if Task.isCancelled || !shouldContinue() { break }
            }
            wait = interval
            guard let connection = await session.connect() else { continue }
            do {
                if let next = try await body(connection) { wait = next }
                session.succeeded()
            } catch {
                await session.failed(error)
            }
        }
        await session.close()
    }
}

/// Runs `work` as one service of the dispatcher's group: cancelled at the service's turn in a graceful
/// shutdown, and never returning before that turn, even when `work` ends early (the daemon's stop flag):
/// a service of the group that returns out of turn makes the group cancel the others.
func runUntilItsTurn(_ work: @escaping @Sendable () async -> Void) async throws {
    try await cancelWhenGracefulShutdown(work)
    try? await gracefulShutdown()
}
