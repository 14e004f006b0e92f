import PostgresClient
import SMSModel

/// Asks the cluster-wide throttle (`sms.reserve_sends`) for each job's phone+channel slot, the
/// per-phone caps, the fraud guard (first attempts only) and, with `rate` > 0, a slot in the cluster's
/// rate schedule. Only jobs still running under their claim are granted anything.
package struct ReserveSends: Statement {
    package var jobs: [ValidJob]
    package var window: Duration
    /// SMS per phone per rolling hour / day; 0: no cap.
    package var hourCap: Int
    package var dayCap: Int
    /// Calls per second for the whole cluster; 0: no rate schedule.
    package var rate: Double
    package var fraud: FraudSettings
    /// How long before its proof window closes a retry of a call that may have gone out must be granted
    /// to be spared the per-phone caps (see `ProofWindow`).
    package var proofMargin: Duration

    package init(
        jobs: [ValidJob], window: Duration, hourCap: Int, dayCap: Int, rate: Double,
        fraud: FraudSettings = FraudSettings(), proofMargin: Duration = .seconds(2)
    ) {
        self.jobs = jobs
        self.window = window
        self.hourCap = hourCap
        self.dayCap = dayCap
        self.rate = rate
        self.fraud = fraud
        self.proofMargin = proofMargin
    }

    /// Each job's verdict, and the jobs the fraud guard flagged in monitor mode (granted all the same).
    package struct Answer: Sendable, Equatable {
        /// A job missing from the answer is missing here too (asked again next round).
        package var verdicts: [Int64: Reservation] = [:]
        package var flagged: [Int64: FraudFlag] = [:]

        package init(verdicts: [Int64: Reservation] = [:], flagged: [Int64: FraudFlag] = [:]) {
            self.verdicts = verdicts
            self.flagged = flagged
        }
    }

    package static let sql = """
        SELECT r_job_id, r_verdict, extract(epoch FROM r_until)::float8 AS until, r_detail, r_slot, r_rule
        FROM sms.reserve_sends($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::float8, $6::int, $7::int,
                               $8::float8, $9::text, $10::int[], $11::int, $12::float8)
        """

    package var bindings: [String?] {
        [
            PostgresArray.literal(jobs.map { Int($0.id) }), PostgresArray.literal(jobs.map { Int($0.lease.token) }),
            PostgresArray.literal(jobs.map { Optional($0.phoneKey) }),
            PostgresArray.literal(jobs.map { Optional($0.channel.rawValue) }), String(window.seconds), String(hourCap),
            String(dayCap), String(max(0, rate)), fraud.mode.rawValue, PostgresArray.literal(fraud.limits),
            String(fraud.trustVerifiedDays), String(proofMargin.seconds),
        ]
    }

    package func decode(_ rows: PostgresRows) throws -> Answer {
        var answer = Answer()
        for row in rows.rows {
            let id = Int64(try row.requiredInt("r_job_id"))
            let ruleName = try row.string("r_rule")
            let rule = ruleName.flatMap(FraudRule.init(rawValue:))
            switch try row.requiredString("r_verdict") {
            case "granted":
                let slot = try row.double("r_slot") ?? 0
                answer.verdicts[id] = .granted(slot: .seconds(double: min(max(0, slot), 3600)))
                if let ruleName {
                    answer.flagged[id] = FraudFlag(
                        rule: rule, message: try row.string("r_detail") ?? "fraud guard (monitor mode, sent): \(ruleName)")
                }
            case "fraud":
                // An unknown rule still ends the job on its row, rejected: only the metric misses it.
                answer.verdicts[id] = .fraud(
                    rule: rule, message: try row.string("r_detail") ?? "fraud guard: \(ruleName ?? "a rule")")
            case "deferred" where (try row.string("r_detail"))?.hasPrefix("busy") == true:
                answer.verdicts[id] = .busy(retryIn: .milliseconds(500))
            case "deferred": answer.verdicts[id] = .deferred(until: try row.double("until") ?? 0)
            case "lost": answer.verdicts[id] = .lost
            case "capped": answer.verdicts[id] = .capped(try row.string("r_detail") ?? "per-phone cap reached")
            case "paused": answer.verdicts[id] = .paused(try row.string("r_detail") ?? "paused by an operator")
            case let other:
                // Not thrown: a statement error would keep the job waiting for its reservation (and
                // its lease extended) for ever. Refused, saying so, it ends on its row.
                answer.verdicts[id] = .capped("sms.reserve_sends returned an unknown verdict \(other.prefix(40)); not sent")
            }
        }
        return answer
    }
}
