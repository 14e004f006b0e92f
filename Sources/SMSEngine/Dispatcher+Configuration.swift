import GenAuth
import PostgresClient
import SMSModel

extension Dispatcher {
    /// What the engine needs, grouped by the service that uses it. Filled in from the daemon's
    /// configuration file and environment by SMSConfiguration, where each key is declared once.
    package struct Configuration: Sendable {
        package var databaseURL = "postgresql:///sms"
        /// This daemon's name in `locked_by` and `sms.workers`; nil: `<host>-<pid>-<random>`.
        package var workerID: String? = nil
        /// `maximumConnections` is set from `claims.concurrency`.
        package var genauth = GenAuthClient.Configuration(userAgent: "sms-dispatcher/\(SMSDispatcherVersion.current)")
        package var claims = ClaimLoop.Configuration()
        package var triage = Triage.Configuration()
        package var admission = Admission.Configuration()
        package var breaker = CircuitBreaker.Configuration()
        package var heartbeat = HeartbeatService.Configuration()
        package var rescuer = LeaseRescuer.Configuration()
        /// `fraud.evaluate_interval`; the guard's other settings are live, in `admission.fraud`.
        package var fraudWatch = FraudWatch.Configuration()
        package var retention = RetentionService.Configuration()
        /// Count the due jobs on each heartbeat for the queue-depth gauge (when metrics are served).
        package var publishesQueueDepth = false

        package init() {}

        /// Every wait on the database is bounded, so a silent peer or an operator's open transaction
        /// cannot hold a loop past systemd's watchdog: statements end after a third of a lease (at most
        /// 10 s; the heartbeat must get through well within one), lock waits after half of that, TCP
        /// keepalives and `tcp_user_timeout` (set by the connection) notice a peer that vanished.
        package var sessionSettings: SessionSettings {
            let statement = min(.seconds(10), max(.seconds(1), claims.lease / 3))
            return SessionSettings(
                statementTimeout: statement, lockTimeout: statement / 2,
                idleInTransactionTimeout: .seconds(60), jit: false, pinnedSearchPath: true)
        }

        /// The configured values that only make sense together; the message names the key to change.
        package func inconsistency() -> (key: String, message: String)? {
            if triage.backoff.maximum < triage.backoff.base {
                return ("retry.max_delay", "must not be below retry.base_delay (\(triage.backoff.base.seconds))")
            }
            if claims.lease <= heartbeat.interval * 2 {
                return (
                    "lease.duration",
                    "must exceed twice heartbeat.interval (\(heartbeat.interval.seconds) s), or live daemons lose their leases"
                )
            }
            // A daemon that dies during a call: its job is back within the call's timeout, the lease and a
            // rescue round, and its retry must still reach GenAuth inside the proof window, or every such
            // retry may be a second SMS (at-least-once; at-most-once never retries it).
            let proof = ProofWindow(throttleWindow: admission.throttleWindow)
            let lead = ProofWindow.lead(pollInterval: claims.pollInterval)
            let rescued = genauth.timeout + claims.lease + rescuer.interval + lead
            if triage.policy == .atLeastOnce && rescued >= proof.length {
                return (
                    "lease.duration",
                    String(
                        format:
                            "genauth.timeout + lease.duration + lease.rescue_interval (%.1f s), plus %.0f s to claim and call again, must be less than %.1f s (throttle.window, at most GenAuth's 60 s): a job whose daemon died during its call must be retried while GenAuth can still prove that call (delivery.policy = at-least-once)",
                        (genauth.timeout + claims.lease + rescuer.interval).seconds, lead.seconds, proof.length.seconds)
                )
            }
            return nil
        }
    }
}
