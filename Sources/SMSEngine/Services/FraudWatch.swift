import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// The fraud guard's anomaly side, River style (one service, one concern, its own session): every
/// `interval`, one round of `sms.fraud_evaluate` (fold the closed minutes into the baselines, block or
/// keep blocking anomalous prefixes and countries; one daemon of the cluster per interval, the others'
/// rounds return at once), then the blocks in force for the log and `smsd_fraud_blocks`, then the
/// guard's retention (`sms.fraud_prune`, at most every 5 minutes, in a transaction of its own). Not on
/// the rescuer's connection: a slow evaluation must never delay a lease rescue. A failed round drops
/// the session (the outage is logged once by `DatabaseSession`) and the next one reconnects.
package struct FraudWatch: Service {
    /// `fraud.evaluate_interval`.
    package struct Configuration: Sendable, Equatable {
        package var interval = Duration.seconds(30)

        package init() {}
    }

    let configuration: Configuration
    /// `fraud.*` are live: each round reads them afresh.
    let settings: LiveSettings.Holder
    let board: FraudBoard
    var session: DatabaseSession
    let logger: Logger
    /// Set when the daemon's stop begins: no new round after it.
    var stopping = StopFlag()

    mutating func rounds() async {
        let (configuration, settings, board, logger) = (self.configuration, self.settings, self.board, self.logger)
        await PeriodicTask.run(
            session: &session, every: configuration.interval, waitFirst: false,
            while: { [stopping] in !stopping.isSet }
        ) { db in
            try await Self.round(
                fraud: settings.snapshot.settings.admission.fraud, interval: configuration.interval,
                board: board, logger: logger, on: db)
            return nil
        }
    }

    static func round(
        fraud: FraudSettings, interval: Duration, board: FraudBoard, logger: Logger,
        on db: PostgresConnection
    ) async throws {
        // The retention runs whatever the evaluation did (its own transaction): state that is never
        // pruned would grow without bound. A failed evaluation is thrown after it (the session logs it).
        var evaluationError: (any Error)? = nil
        if fraud.mode == .off {
            // Off: nothing is decided, so no block holds; the gauges say so (without a line per block).
            board.forget()
        } else {
            do {
                for change in try await db.run(EvaluateFraud(settings: fraud, interval: interval)) where change.isNew {
                    let block = change.block
                    logger.warning(
                        fraud.mode == .enforce
                            ? "fraud guard blocked \(block.scope.rawValue) \(block.key)"
                            : "fraud guard (monitor mode, not enforced) would block \(block.scope.rawValue) \(block.key)",
                        metadata: [
                            "scope": "\(block.scope.rawValue)", "key": "\(block.key)", "reason": "\(block.reason)",
                            "mode": "\(fraud.mode.rawValue)", "minutes": "\(Int(fraud.blockDuration.seconds / 60))",
                        ])
                }
                board.update(try await db.run(ListFraudBlocks()))
            } catch {
                evaluationError = error
            }
        }
        // Whatever the mode: producers' verifications are counted even while the guard is off.
        let pruned = try await db.run(PruneFraudState(settings: fraud))
        if pruned > 0 {
            logger.debug("fraud guard pruned old counters", metadata: ["rows": "\(pruned)"])
        }
        if let evaluationError { throw evaluationError }
    }
}

extension FraudWatch {
    /// Its evaluator rounds until its turn in the shutdown, which stops it at once (between rounds or in one:
    /// a round is a transaction that either commits or is rolled back).
    package func run() async throws {
        try await runUntilItsTurn {
            var service = self
            await service.rounds()
        }
    }
}
