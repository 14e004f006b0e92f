import Logging
import Metrics
import SMSJobStore
import SMSModel
import Synchronization

/// What this daemon knows of the fraud guard, for its log and metrics: the decisions of its own
/// reservations per rule, and the blocks in force (as `FraudWatch` last read them). Not what enforces
/// anything: the reservation decides in the database.
package final class FraudBoard: Sendable {
    private let logger: Logger
    /// `smsd_fraud_decisions_total{rule, decision}`: jobs stopped (`blocked`) or, in monitor mode,
    /// let through that would have been (`flagged`), by this daemon.
    private let decisions: [FraudRule: [FraudDecision: Metrics.Counter]]
    /// `smsd_fraud_blocks{scope}`: anomaly blocks in force in the cluster.
    private let blockGauges: [FraudBlock.Scope: Gauge]
    private let blocks = Mutex<[FraudBlock]>([])
    /// Monitor mode flags every job of an attack: a line a minute says so (how many since the last
    /// line, and the latest example).
    private let flaggedLog = OccasionalLog()
    private let flaggedSince = Atomic<Int>(0)

    /// `factory`: the metrics system's (tests pass their own).
    package init(logger: Logger, factory: any MetricsFactory = MetricsSystem.factory) {
        self.logger = logger
        decisions = Dictionary(
            uniqueKeysWithValues: FraudRule.allCases.map { rule in
                (
                    rule,
                    Dictionary(
                        uniqueKeysWithValues: [FraudDecision.blocked, .flagged].map { decision in
                            (
                                decision,
                                Metrics.Counter(
                                    label: "smsd_fraud_decisions_total",
                                    dimensions: [("rule", rule.rawValue), ("decision", decision.rawValue)],
                                    factory: factory)
                            )
                        })
                )
            })
        blockGauges = Dictionary(
            uniqueKeysWithValues: FraudBlock.Scope.allCases.map {
                ($0, Gauge(label: "smsd_fraud_blocks", dimensions: [("scope", $0.rawValue)], factory: factory))
            })
        for gauge in blockGauges.values { gauge.record(0) }
    }

    /// Counts one reservation's fraud decisions; logs monitor mode's flags (a minute's worth per line).
    func record(_ answer: ReserveSends.Answer, now: ContinuousClock.Instant = .now) {
        for verdict in answer.verdicts.values {
            if case .fraud(let rule?, _) = verdict { decisions[rule]?[.blocked]?.increment() }
        }
        guard let example = answer.flagged.values.first else { return }
        for flag in answer.flagged.values {
            if let rule = flag.rule { decisions[rule]?[.flagged]?.increment() }
        }
        flaggedSince.add(answer.flagged.count, ordering: .relaxed)
        if flaggedLog.due(now: now) {
            logger.notice(
                "fraud guard (monitor mode) let through jobs it would have stopped",
                metadata: [
                    "jobs": "\(flaggedSince.exchange(0, ordering: .relaxed))", "example": "\(example.message)",
                ])
        }
    }

    /// The guard is off: no block holds, and none is said to have ended.
    func forget() {
        blocks.withLock { $0 = [] }
        for gauge in blockGauges.values { gauge.record(0) }
    }

    /// Takes the database's blocks in force; logs each block that ended.
    func update(_ fresh: [FraudBlock]) {
        let previous = blocks.withLock { value in
            defer { value = fresh }
            return value
        }
        let current = Set(fresh.map(\.id))
        for block in previous where !current.contains(block.id) {
            logger.notice(
                "fraud guard block ended: \(block.scope.rawValue) \(block.key)",
                metadata: [
                    "scope": "\(block.scope.rawValue)", "key": "\(block.key)",
                ])
        }
        for scope in FraudBlock.Scope.allCases {
            blockGauges[scope]?.record(fresh.filter { $0.scope == scope }.count)
        }
    }
}
