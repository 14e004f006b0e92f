import PostgresClient
import ServiceLifecycle
import SMSJobStore
import SMSModel

/// What tells the claim loop that jobs may be due: `LISTEN sms_jobs` (sent by the insert trigger and a
/// requeue) and, as the fallback for a lost notification and the loop's clock, a tick every poll
/// interval. River's notifier, plus its fetch poller.
struct WakeSource: Sendable {
    /// `poll_interval`.
    let pollInterval: Duration
    let events: DispatchEvents

    /// The ticker: also feeds systemd's watchdog through the loop (if the loop stops coming round, the
    /// watchdog goes hungry) and lets a draining shutdown notice its deadline.
    func tick() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: pollInterval)
            events.send(.tick)
        }
    }

    /// LISTEN on a session of its own; after each (re)start the loop is woken for what was inserted
    /// while nobody listened.
    func listen(session: inout DatabaseSession) async {
        let wait = min(pollInterval, .seconds(1))
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            guard let connection = await session.connect() else { continue }
            do {
                try await connection.listen(NotifyJobsAvailable.channel)
                session.succeeded()
                events.send(.jobsAvailable)
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    if !(try await connection.waitForNotifications(timeout: wait)).isEmpty { events.send(.jobsAvailable) }
                }
            } catch {
                await session.failed(error)
            }
        }
        await session.close()
    }
}
