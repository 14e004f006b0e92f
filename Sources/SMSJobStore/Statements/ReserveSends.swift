import PostgresClient
import SMSModel

/// Asks the cluster-wide throttle (`sms.reserve_sends`) for each job's phone+channel slot, the
/// per-phone caps and, with `rate` > 0, a slot in the cluster's rate schedule. Only jobs still
/// running under their claim are granted anything.
public struct ReserveSends: Statement {
    public var jobs: [ValidJob]
    public var window: Duration
    /// SMS per phone per rolling hour / day; 0: no cap.
    public var hourCap: Int
    public var dayCap: Int
    /// Calls per second for the whole cluster; 0: no rate schedule.
    public var rate: Double

    public init(jobs: [ValidJob], window: Duration, hourCap: Int, dayCap: Int, rate: Double) {
        self.jobs = jobs
        self.window = window
        self.hourCap = hourCap
        self.dayCap = dayCap
        self.rate = rate
    }

    public static let sql = """
        SELECT r_job_id, r_verdict, extract(epoch FROM r_until)::float8 AS until, r_detail, r_slot
        FROM sms.reserve_sends($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::float8, $6::int, $7::int,
                               $8::float8)
        """

    public var bindings: [String?] {
        [PostgresArray.literal(jobs.map { Int($0.id) }), PostgresArray.literal(jobs.map { Int($0.lease.token) }),
         PostgresArray.literal(jobs.map { Optional($0.phoneKey) }),
         PostgresArray.literal(jobs.map { Optional($0.channel.rawValue) }), String(window.seconds), String(hourCap),
         String(dayCap), String(max(0, rate))]
    }

    /// Each job's verdict; a job missing from the answer is missing here too (asked again next round).
    public func decode(_ rows: PostgresRows) throws -> [Int64: Reservation] {
        var verdicts: [Int64: Reservation] = [:]
        for row in rows.rows {
            let id = Int64(try row.requiredInt("r_job_id"))
            switch try row.requiredString("r_verdict") {
            case "granted":
                let slot = try row.double("r_slot") ?? 0
                verdicts[id] = .granted(slot: .seconds(double: min(max(0, slot), 3600)))
            case "deferred": verdicts[id] = .deferred(until: try row.double("until") ?? 0)
            case "lost": verdicts[id] = .lost
            case "capped": verdicts[id] = .capped(try row.string("r_detail") ?? "per-phone cap reached")
            case "paused": verdicts[id] = .paused(try row.string("r_detail") ?? "paused by an operator")
            case let other:
                // Not thrown: a statement error would keep the job waiting for its reservation (and
                // its lease extended) for ever. Refused, saying so, it ends on its row.
                verdicts[id] = .capped("sms.reserve_sends returned an unknown verdict \(other.prefix(40)); not sent")
            }
        }
        return verdicts
    }
}
