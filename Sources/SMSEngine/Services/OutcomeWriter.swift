import Logging
import PostgresClient
import SMSJobStore
import SMSModel
import ServiceLifecycle

/// Writes outcomes back to their rows on a connection of its own, so writing one batch overlaps with
/// claiming the next. It takes whatever has piled up and writes it in one statement: while one write
/// runs, the next batch grows, so batches grow with load by themselves. Outcomes survive any database
/// failure in memory (gone, read-only, full, slow) and go out once it accepts them again. Ends when
/// the queue is finished and empty (after the drain), or when cancelled (grace period over). River's
/// completer.
struct OutcomeWriter: Service {
    /// How long the writer waits for a small batch of outcomes to grow before writing it. At a few
    /// hundred jobs a second a statement per one or two outcomes was a third of the database's work;
    /// waiting a few milliseconds writes several in one. The SMS has gone out by then: only the row
    /// (and the producer's `sms_job_events` notification) is that much later.
    static let linger = Duration.milliseconds(5)

    let worker: String
    /// How long, once its turn in the shutdown comes (after the claim loop's drain), it goes on writing
    /// what is left: outcomes already decided are the truth, and written they spare their jobs the
    /// rescue's "delivery unknown". Within TimeoutStopSec (30 s): the drain, then this.
    var shutdownLimit = Duration.seconds(10)
    let throttleWindow: Duration
    /// Below this many outcomes a batch lingers for company (half the calls in flight).
    let smallBatch: Int
    let writes: WriteQueue
    let leases: LeaseBook
    let events: DispatchEvents
    /// `smsd_possible_duplicates_total` counts the rows a write-back marks as a second SMS.
    let metrics: DispatcherMetrics
    var session: DatabaseSession
    let logger: Logger
    let queueFullLog = OccasionalLog()

    mutating func write() async {
        var pending: [JobOutcome] = []
        while !Task.isCancelled {
            var finished = false
            if pending.isEmpty {
                (pending, finished) = await writes.next()
            } else {
                // Left over from a failed write: again, with whatever has come since, without waiting.
                pending += writes.takeNow()
            }
            // Under load outcomes arrive one by one; a moment's wait turns many one-row statements
            // into one. Nobody waits for this (the SMS has gone out; only the row is not updated yet).
            if !finished, !pending.isEmpty, pending.count < smallBatch {
                try? await Task.sleep(for: Self.linger)
                pending += writes.takeNow()
            }
            if pending.isEmpty {
                if finished { break }
                continue
            }
            let taken = pending.count
            pending = Self.onePerClaim(pending)
            if let connection = await session.connect() {
                var settled: [JobOutcome] = []
                do {
                    try await write(&pending, settled: &settled, to: connection)
                    session.succeeded()
                    writes.stuckSince = nil
                } catch {
                    if writes.stuckSince == nil { writes.stuckSince = .now }
                    await session.failed(error)
                }
                // Written or fenced out: no longer this process's to hold (even when a later row failed).
                for outcome in settled { leases.release(outcome.job) }
                // A job put back to pending and due now (released, retried at once) is a due signal:
                // the claim loop claims on those, not on every write. Later retries and deferrals are
                // found by the loop's periodic look (see `ClaimLoop.StateMachine.recheck`).
                if settled.contains(where: { $0.isDueAgainNow }) { events.send(.jobsAvailable) }
            } else if writes.stuckSince == nil {
                writes.stuckSince = .now
            }
            writes.settled(taken - pending.count)
            // The loop waits for an idle writer before it stops; and a write may have freed jobs to claim.
            events.send(.outcomesWritten)
        }
        if writes.unsettled > 0 {
            logger.error(
                "stopping with outcomes not written; their leases will expire and the jobs be rescued",
                metadata: ["count": "\(writes.unsettled)"])
        }
        await session.close()
    }

    private func complete(_ outcomes: [JobOutcome], on db: PostgresConnection) async throws -> Int {
        let written = try await db.runAnnouncing(CompleteJobs(worker: worker, outcomes: outcomes, throttleWindow: throttleWindow))
        { error in
            if queueFullLog.due() {
                logger.error(
                    "the NOTIFY queue is full (a LISTENing session stopped reading); writing outcomes without announcing them on sms_job_events (logged once a minute while it lasts)",
                    metadata: ["error": "\(error)"])
            }
        }
        if written.secondSMS > 0 {
            metrics.possibleDuplicates.increment(by: written.secondSMS)
            logger.warning(
                "a late answer showed a job's phone got, or may have got, a second SMS; its row says so",
                metadata: ["jobs": "\(written.secondSMS)"])
        }
        return written.updated
    }

    /// One outcome per claim of a job: one statement must not update a row twice (PostgreSQL would apply
    /// one of the two, which one unsaid). Two can meet in a batch when a call's end came after its slot
    /// was reclaimed as overdue (`CallBook`): GenAuth's acceptance wins, then the later outcome.
    static func onePerClaim(_ outcomes: [JobOutcome]) -> [JobOutcome] {
        var chosen: [JobLease: Int] = [:]
        var kept: [JobOutcome] = []
        for outcome in outcomes {
            if let index = chosen[outcome.job] {
                if kept[index].state != .sent || outcome.state == .sent { kept[index] = outcome }
            } else {
                chosen[outcome.job] = kept.count
                kept.append(outcome)
            }
        }
        return kept
    }

    /// Writes outcomes: those settled (written, or fenced out because the job is no longer under their
    /// claim) move from `unwritten` to `settled`; what is left in `unwritten` is to be tried again.
    /// Only a data error (SQLSTATE class 22 or 23: a value one row cannot hold) is settled row by row;
    /// such a row is written without GenAuth's values and says why (a sent SMS stays `sent`). Any
    /// other error (the connection, read-only, disk full, a timeout, a deadlock) throws with every
    /// outcome not yet written kept.
    private func write(_ unwritten: inout [JobOutcome], settled: inout [JobOutcome], to db: PostgresConnection) async throws {
        do {
            let updated = try await complete(unwritten, on: db)
            if updated < unwritten.count {
                logger.warning(
                    "some outcomes were not written: those jobs were no longer under this claim",
                    metadata: ["fenced_out": "\(unwritten.count - updated)"])
            }
            settled += unwritten
            unwritten.removeAll(keepingCapacity: true)
        } catch let error as PostgresError where error.disposition == .data {
            logger.error("batch write-back refused by a data error; writing row by row", metadata: ["error": "\(error)"])
            while let outcome = unwritten.first {
                do {
                    _ = try await complete([outcome], on: db)
                } catch let rowError as PostgresError where rowError.disposition == .data {
                    logger.error(
                        "write-back refused for a job; writing it without GenAuth's values",
                        metadata: [
                            "job": "\(outcome.jobID)", "error": "\(rowError)",
                        ])
                    do {
                        _ = try await complete([outcome.storable(after: rowError.message)], on: db)
                    } catch let again as PostgresError where again.disposition == .data {
                        // Nothing of GenAuth's is left in it; its lease runs out and the rescue settles it.
                        logger.critical(
                            "write-back refused even without GenAuth's values; leaving the job to lease rescue",
                            metadata: ["job": "\(outcome.jobID)", "error": "\(again)"])
                    }
                }
                settled.append(unwritten.removeFirst())
            }
        }
    }
}

extension JobOutcome {
    /// Back to pending with nothing to wait for.
    fileprivate var isDueAgainNow: Bool {
        switch next {
        case .putBack: true
        case .retry(let delay): delay <= .zero
        case .finished, .deferred: false
        }
    }
}

extension OutcomeWriter {
    /// Writes until its turn in the shutdown, and from then at most `shutdownLimit` more: it stops as
    /// soon as everything submitted is written (the claim loop finished the queue when it stopped),
    /// never before its turn (a service of the group that ends out of turn cancels the others).
    func run() async throws {
        let limit = shutdownLimit
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var writer = self
                await writer.write()
            }
            try? await gracefulShutdown()
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }
}
