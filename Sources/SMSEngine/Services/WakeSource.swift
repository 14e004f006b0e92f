import PostgresClient
import ServiceLifecycle
import SMSJobStore
import SMSModel

/// What tells the claim loop that jobs may be due: `LISTEN sms_jobs` (sent by the insert trigger, a
/// requeue and a resume) and, as the fallback for a lost notification and the loop's clock, a tick
/// every poll interval. River's notifier, plus its fetch poller. It also hears `sms_controls` (an
/// operator's pause or resume) and refreshes the pause board from the same connection.
struct WakeSource: Sendable {
    /// `poll_interval`.
    let pollInterval: Duration
    let events: DispatchEvents
    let pauses: PauseBoard

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
                try await connection.listen(NotificationChannel.jobsAvailable.rawValue)
                try await connection.listen(NotificationChannel.controls.rawValue)
                session.succeeded()
                pauses.update(try await connection.run(ListPauses()))
                events.send(.jobsAvailable)
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    let received = try await connection.waitForNotifications(timeout: wait)
                    if received.isEmpty { continue }
                    if received.contains(where: { $0.channel == NotificationChannel.controls.rawValue }) {
                        pauses.update(try await connection.run(ListPauses()))
                    }
                    events.send(.jobsAvailable)
                }
            } catch {
                await session.failed(error)
            }
        }
        await session.close()
    }
}
