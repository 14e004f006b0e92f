import Logging
import MetricsTestKit
import SMSJobStore
import SMSModel
import Testing

@testable import SMSEngine

/// The fraud guard's board: counts each reservation's stops and monitor-mode flags per rule, and sets
/// the blocks gauge from the blocks in force. No database: a test metrics factory.
@Suite("Fraud board")
struct FraudBoardTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func counter(_ metrics: TestMetrics, _ rule: FraudRule, _ decision: FraudDecision) throws -> Int64 {
        try metrics.expectCounter("smsd_fraud_decisions_total", [("rule", rule.rawValue), ("decision", decision.rawValue)])
            .totalValue
    }

    @Test("stops and flags are counted per rule and decision; an unknown rule only misses the metric")
    func decisions() throws {
        let metrics = TestMetrics()
        let board = FraudBoard(logger: logger, factory: metrics)
        board.record(
            ReserveSends.Answer(verdicts: [
                1: .fraud(rule: .perIPHour, message: "fraud guard: per_ip_hour: ..."),
                2: .fraud(rule: .perIPHour, message: "fraud guard: per_ip_hour: ..."),
                3: .fraud(rule: .countryBlock, message: "fraud guard: country_block: ..."),
                4: .fraud(rule: nil, message: "fraud guard: a newer rule"),
                5: .granted(slot: .zero),
                6: .capped("per-phone cap reached"),
            ]))
        board.record(
            ReserveSends.Answer(
                verdicts: [7: .granted(slot: .zero)],
                flagged: [
                    7: FraudFlag(rule: .perUserHour, message: "fraud guard (monitor mode, sent): per_user_hour: ...")
                ]))
        #expect(try counter(metrics, .perIPHour, .blocked) == 2)
        #expect(try counter(metrics, .countryBlock, .blocked) == 1)
        #expect(try counter(metrics, .perUserHour, .flagged) == 1)
        #expect(try counter(metrics, .perUserHour, .blocked) == 0 && counter(metrics, .perIPHour, .flagged) == 0)
    }

    @Test("the blocks gauge follows the blocks in force per scope, and off mode zeroes it")
    func blocks() throws {
        let metrics = TestMetrics()
        let board = FraudBoard(logger: logger, factory: metrics)
        func gauge(_ scope: FraudBlock.Scope) throws -> Double? {
            try metrics.expectGauge("smsd_fraud_blocks", [("scope", scope.rawValue)]).lastValue
        }
        #expect(try gauge(.prefix) == 0 && gauge(.country) == 0)
        board.update([
            FraudBlock(scope: .prefix, key: "+86 1381234", since: 1, until: 2, reason: "anomaly"),
            FraudBlock(scope: .prefix, key: "+44 770090", since: 1, until: 2, reason: "anomaly"),
            FraudBlock(scope: .country, key: "+62", since: 1, until: 2, reason: "anomaly"),
        ])
        #expect(try gauge(.prefix) == 2 && gauge(.country) == 1)
        board.update([FraudBlock(scope: .country, key: "+62", since: 1, until: 2, reason: "anomaly")])
        #expect(try gauge(.prefix) == 0 && gauge(.country) == 1)
        board.forget()
        #expect(try gauge(.prefix) == 0 && gauge(.country) == 0)
    }
}
