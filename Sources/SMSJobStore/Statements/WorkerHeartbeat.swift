import PostgresClient
import SMSModel

/// Refreshes this process's row in `sms.workers` (`(id, instance)`: two processes with one worker id
/// are two rows), with its counters and how far its write-back is behind.
package struct WorkerHeartbeat: Statement {
    package var worker: WorkerIdentity
    package var inFlight: Int
    package var counters: WorkerCounters
    /// Outcomes decided and not yet written, and for how long writes have been failing (nil: they succeed).
    package var unwritten: Int
    package var oldestUnwritten: Duration?

    package init(
        worker: WorkerIdentity, inFlight: Int, counters: WorkerCounters, unwritten: Int = 0,
        oldestUnwritten: Duration? = nil
    ) {
        self.worker = worker
        self.inFlight = inFlight
        self.counters = counters
        self.unwritten = unwritten
        self.oldestUnwritten = oldestUnwritten
    }

    package static let sql = """
        INSERT INTO sms.workers (id, instance, host, pid, version, in_flight, claimed, sent, failed, retried,
                                 rejected, expired, deferred, superseded, unwritten, oldest_unwritten_s)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        ON CONFLICT (id, instance) DO UPDATE SET
            heartbeat_at = now(), in_flight = EXCLUDED.in_flight, claimed = EXCLUDED.claimed,
            sent = EXCLUDED.sent, failed = EXCLUDED.failed, retried = EXCLUDED.retried,
            rejected = EXCLUDED.rejected, expired = EXCLUDED.expired, deferred = EXCLUDED.deferred,
            superseded = EXCLUDED.superseded, unwritten = EXCLUDED.unwritten,
            oldest_unwritten_s = EXCLUDED.oldest_unwritten_s, stopped_at = NULL
        """

    package var bindings: [String?] {
        [
            worker.id, worker.instance, worker.host, String(worker.pid), SMSDispatcherVersion.current, String(inFlight),
            String(counters.claimed), String(counters.sent), String(counters.failed), String(counters.retried),
            String(counters.rejected), String(counters.expired), String(counters.deferred),
            String(counters.superseded), String(unwritten), oldestUnwritten.map { String($0.seconds) },
        ]
    }
}
