import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// Returns jobs whose lease ran out (their holder died, hung, or lost the database longer than a
/// lease) to the queue by the delivery policy. Any daemon may do it; the row lock makes each rescue
/// happen once. River's rescuer. Each round is followed by the paused-job expirer's, on this session.
package struct LeaseRescuer: Service {
    /// `lease.rescue_interval`.
    package struct Configuration: Sendable, Equatable {
        package var interval = Duration.seconds(10)

        package init() {}
    }

    let configuration: Configuration
    let policy: DeliveryPolicy
    /// `throttle.window` (the rescue reads a grant's slot back from its phone's window).
    let throttleWindow: Duration
    /// Once a rescued call's proof window has closed, its holder's own answer gets this long to land
    /// before the retry (which may be a second SMS): the holder's sessions reconnect within their
    /// backoff's cap (`DatabaseSession`, 10 s) of the database coming back, and write at once.
    static let holderGrace = Duration.seconds(15)
    let expirer: PausedJobExpirer
    var session: DatabaseSession
    let logger: Logger
    /// Set when the daemon's stop begins: no new round after it.
    var stopping = StopFlag()
    let queueFullLog = OccasionalLog()

    mutating func rounds() async {
        let (policy, logger, expirer, queueFullLog) = (self.policy, self.logger, self.expirer, self.queueFullLog)
        let throttleWindow = self.throttleWindow
        await PeriodicTask.run(
            session: &session, every: configuration.interval,
            while: { [stopping] in !stopping.isSet }
        ) {
            db in
            let rescued: [(id: Int64, state: JobState)]
            do {
                rescued = try await Self.rescue(
                    policy: policy, throttleWindow: throttleWindow, on: db, logger: logger,
                    queueFullLog: queueFullLog)
            } catch {
                // The expirer's round is its own: a failed rescue does not cost it.
                await expirer.round(on: db)
                throw error
            }
            if !rescued.isEmpty {
                logger.warning(
                    "rescued jobs whose lease expired",
                    metadata: [
                        "count": "\(rescued.count)", "failed": "\(rescued.filter { $0.state == .failed }.count)",
                        "policy": "\(policy.rawValue)",
                    ])
            }
            await expirer.round(on: db)
            return nil
        }
    }

    /// The rescue never depends on NOTIFY: when PostgreSQL refuses notifications (its queue is full),
    /// the same rescue goes through without announcing.
    static func rescue(
        policy: DeliveryPolicy, throttleWindow: Duration, on db: PostgresConnection, logger: Logger,
        queueFullLog: OccasionalLog
    ) async throws -> [(id: Int64, state: JobState)] {
        try await db.runAnnouncing(
            RescueExpiredLeases(policy: policy, throttleWindow: throttleWindow, holderGrace: Self.holderGrace)
        ) { error in
            if queueFullLog.due() {
                logger.error(
                    "the NOTIFY queue is full (a LISTENing session stopped reading); rescuing without announcing on sms_job_events",
                    metadata: ["error": "\(error)"])
            }
        }
    }
}

extension LeaseRescuer {
    /// Its rescue rounds until its turn in the shutdown, which stops it at once (between rounds or in one:
    /// a round is a transaction that either commits or is rolled back).
    package func run() async throws {
        try await runUntilItsTurn {
            var service = self
            await service.rounds()
        }
    }
}
