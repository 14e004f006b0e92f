import Logging
import ServiceLifecycle
import SMSJobStore
import SMSModel

/// Returns jobs whose lease ran out (their holder died, hung, or lost the database longer than a
/// lease) to the queue by the delivery policy. Any daemon may do it; the row lock makes each rescue
/// happen once. River's rescuer.
public struct LeaseRescuer: Sendable {
    /// `lease.rescue_interval`.
    public struct Configuration: Sendable, Equatable {
        public var interval = Duration.seconds(10)

        public init() {}
    }

    let configuration: Configuration
    let policy: DeliveryPolicy
    var session: DatabaseSession
    let logger: Logger

    mutating func run() async {
        let (policy, logger) = (self.policy, self.logger)
        await PeriodicTask.run(session: &session, every: configuration.interval, while: { !Task.isShuttingDownGracefully }) { db in
            let rescued = try await db.run(RescueExpiredLeases(policy: policy))
            if !rescued.isEmpty {
                logger.warning("rescued jobs whose lease expired", metadata: [
                    "count": "\(rescued.count)", "failed": "\(rescued.filter { $0.state == .failed }.count)",
                    "policy": "\(policy.rawValue)",
                ])
            }
            return nil
        }
    }
}
