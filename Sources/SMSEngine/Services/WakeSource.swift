import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// What tells the claim loop that jobs may be due: `LISTEN sms_jobs` (sent by the insert trigger, a
/// requeue and a resume) and, as the fallback for a lost notification and the loop's clock, a tick
/// every poll interval. River's notifier, plus its fetch poller. It also hears `sms_controls` (an
/// operator's pause or resume) and refreshes the pause board from the same connection.
struct WakeSource: Sendable {
    /// `poll_interval`.
    let pollInterval: Duration
    let events: DispatchEvents
    let pauses: PauseBoard
    /// How often the loop hears `.clock` at least: well inside systemd's `WatchdogSec` (30 s), which
    /// the loop feeds on every turn, and a draining shutdown's deadline is seen within it.
    var clockInterval = Duration.seconds(10)
    /// Set when the daemon's stop begins: LISTEN ends then (the drain claims nothing); the ticker goes on.
    var stopping = StopFlag()

    /// The ticker: `.tick` every poll interval, and `.clock` in between so that the loop comes round
    /// at least every `clockInterval` (if it stops coming round, the watchdog goes hungry).
    func tick() async {
        var ticker = Ticker(pollInterval: pollInterval, clockInterval: clockInterval)
        while !Task.isCancelled {
            let (wait, event) = ticker.next()
            try? await Task.sleep(for: wait)
            events.send(event)
        }
    }

    /// The ticker's schedule, pure: how long to sleep before its next event, and which.
    struct Ticker: Sendable {
        let pollInterval: Duration
        let clockInterval: Duration
        private var sincePoll = Duration.zero

        init(pollInterval: Duration, clockInterval: Duration) {
            self.pollInterval = pollInterval
            self.clockInterval = clockInterval
        }

        mutating func next() -> (wait: Duration, event: DispatchEvent) {
            let untilPoll = pollInterval - sincePoll
            if untilPoll <= clockInterval {
                sincePoll = .zero
                return (untilPoll, .tick)
            }
            sincePoll += clockInterval
            return (clockInterval, .clock)
        }
    }

    /// LISTEN on a session of its own; after each (re)start the loop is woken for what was inserted
    /// while nobody listened.
    func listen(session: inout DatabaseSession) async {
        let wait = min(pollInterval, .seconds(1))
        while !Task.isCancelled && !Task.isShuttingDownGracefully && !stopping.isSet {
            guard let connection = await session.connect() else { continue }
            do {
                try await connection.listen(NotificationChannel.jobsAvailable.rawValue)
                try await connection.listen(NotificationChannel.controls.rawValue)
                session.succeeded()
                pauses.update(try await connection.run(ListPauses()))
                events.send(.jobsAvailable)
                while !Task.isCancelled && !Task.isShuttingDownGracefully && !stopping.isSet {
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

extension WakeSource {
    /// The ticker as a service: it runs until its turn in the shutdown, after the claim loop's drain
    /// (which needs the clock) and the writer's.
    struct Ticking: Service {
        let source: WakeSource

        func run() async throws {
            try await cancelWhenGracefulShutdown { await source.tick() }
        }
    }

    /// LISTEN as a service, on a session of its own, until its turn in the shutdown.
    struct Listening: Service {
        let source: WakeSource
        let session: DatabaseSession

        func run() async throws {
            try await runUntilItsTurn {
                var session = self.session
                await source.listen(session: &session)
            }
        }
    }
}
