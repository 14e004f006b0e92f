import PostgresClient
import SMSModel

/// Writes a batch of outcomes in one round trip (`unnest` over arrays), fenced on the claim token: a
/// row is only changed while it is still `running` under the claim the outcome belongs to, so
/// neither a worker that lost its lease nor a stale outcome of an earlier claim can overwrite the
/// truth. Two exceptions, for the truth's sake: a call's outcome may still land on a row rescued
/// from this very claim (same token, not claimed since, marked uncertain by the rescue), as when
/// the database was away longer than a lease: the rescue could only guess, the holder knows. And a
/// call GenAuth accepted lands whatever became of the row meanwhile (claimed again, expired, failed
/// "delivery unknown"): its job is sent; a job already sent by another call says a second SMS went out.
/// Every call gets its `sms.attempts` row, fenced out or not.
/// Times are sent as "seconds ago" by this host's monotonic clock and become `now() - ago`, so
/// only the database's clock is ever written. Each call also gets its `sms.attempts` row, and every
/// row written (superseded ones too) is announced on `sms_job_events` as `<id>:<state>`.
package struct CompleteJobs: AnnouncingStatement {
    /// Written to `sms.attempts.worker`.
    package var worker: String
    package var outcomes: [JobOutcome]
    /// The phone+channel window a sent (or maybe sent) call holds, from the end of that call.
    package var throttleWindow: Duration
    /// "Now" by this host's monotonic clock, from which the calls' times become "so long ago".
    package var now: ContinuousClock.Instant
    /// Announce the rows on `sms_job_events`. Off only to get the truth onto the rows when PostgreSQL
    /// refuses notifications (its queue is full because a listener stopped reading: SQLSTATE 54000).
    package var announces: Bool

    package init(
        worker: String, outcomes: [JobOutcome], throttleWindow: Duration, now: ContinuousClock.Instant = .now,
        announces: Bool = true
    ) {
        self.worker = worker
        self.outcomes = outcomes
        self.throttleWindow = throttleWindow
        self.now = now
        self.announces = announces
    }

    /// The statement, in `CompleteJobs.sql` beside this file (compiled in by SwiftPM), its parameters in
    /// the order of `bindings`.
    package static let sql = String(decoding: PackageResources.CompleteJobs_sql, as: UTF8.self)

    package var bindings: [String?] {
        let calls = outcomes.map(\.call)
        let now = self.now
        return [
            worker,
            PostgresArray.literal(outcomes.map { Int($0.job.id) }),
            PostgresArray.literal(outcomes.map { Int($0.job.token) }),
            PostgresArray.literal(outcomes.map { Optional($0.state.rawValue) }),
            PostgresArray.literal(calls.map { $0 == nil ? 0 : 1 }),
            PostgresArray.literal(calls.map { $0?.httpStatus }),
            PostgresArray.literal(calls.map { $0?.statusCode }),
            PostgresArray.literal(calls.map { $0?.apiCode }),
            PostgresArray.literal(outcomes.map(\.message)),
            PostgresArray.literal(calls.map { $0?.requestID }),
            PostgresArray.literal(outcomes.map { Optional($0.retryIn?.seconds ?? 0) }),
            PostgresArray.literal(calls.map { $0.map { max(0, $0.startedAt.duration(to: now).seconds) } }),
            PostgresArray.literal(calls.map { $0.map { max(0, $0.finishedAt.duration(to: now).seconds) } }),
            PostgresArray.literal(
                outcomes.map { outcome -> String? in
                    guard outcome.call != nil else { return nil }
                    switch outcome.state {
                    case .sent: return "sent"
                    case .pending: return "retry"
                    default: return "failed"
                    }
                }),
            PostgresArray.literal(calls.map { $0?.message }),
            PostgresArray.literal(outcomes.map(\.deferredUntil)),
            PostgresArray.literal(outcomes.map { $0.coalesce ? 1 : 0 }),
            PostgresArray.literal(outcomes.map { $0.uncertain ? 1 : 0 }),
            PostgresArray.literal(outcomes.map(\.unseenCallProvableUntil)),
            String(throttleWindow.seconds),
            announces ? "true" : "false",
        ]
    }

    /// How many rows the fence let through (the rest were no longer under their claim), and how many of
    /// them say a second SMS went out or may have (for `smsd_possible_duplicates_total`).
    package func decode(_ rows: PostgresRows) throws -> Written {
        Written(
            updated: try rows.first?.int("updated") ?? 0,
            secondSMS: (try rows.first?.int("doubled") ?? 0) + (try rows.first?.int("second_possible") ?? 0))
    }

    package struct Written: Sendable, Equatable {
        package var updated: Int
        /// Rows this statement marked `a second SMS went out` or `a second SMS is possible`.
        package var secondSMS: Int
    }
}
