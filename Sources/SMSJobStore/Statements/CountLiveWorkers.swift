import PostgresClient
import SMSModel

/// Daemons alive (a heartbeat within `staleAfter`), and how many other live processes use this
/// process's worker id.
package struct CountLiveWorkers: Statement {
    package var worker: WorkerIdentity
    package var staleAfter: Duration

    package init(worker: WorkerIdentity, staleAfter: Duration) {
        self.worker = worker
        self.staleAfter = staleAfter
    }

    package struct Count: Sendable, Equatable {
        /// Daemons alive, this one included.
        package var live: Int
        /// Other live processes using this worker id.
        package var sharingID: Int
    }

    package static let sql = """
        SELECT count(*)::int AS n, count(*) FILTER (WHERE id = $2 AND instance <> $3)::int AS sharing
        FROM sms.workers
        WHERE heartbeat_at > now() - make_interval(secs => $1::float8) AND stopped_at IS NULL
        """

    package var bindings: [String?] { [String(staleAfter.seconds), worker.id, worker.instance] }

    package func decode(_ rows: PostgresRows) throws -> Count {
        Count(live: max(1, try rows.first?.int("n") ?? 1), sharingID: try rows.first?.int("sharing") ?? 0)
    }
}
