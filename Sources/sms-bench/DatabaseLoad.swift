import Foundation
import PostgresClient

extension Bench {
    /// The daemon logs in as this role (a member of `sms_dispatcher` alone, as in production), so its
    /// statements and its backends' CPU can be told from the bench's own polling connection.
    static let daemonRole = "smsd_bench_daemon"

    /// What a run cost the shared PostgreSQL: WAL, statements and round trips, transactions and the CPU of
    /// the daemon's own backends. Taken as a difference of two `Snapshot`s.
    struct DatabaseLoad {
        var walBytes = 0.0
        /// Statements the daemon's connections executed, each one a round trip (`pg_stat_statements`,
        /// top level: the daemon does not pipeline).
        var roundTrips = 0.0
        /// Every statement PostgreSQL executed for them, the ones inside the daemon's SQL functions too.
        var statements = 0.0
        /// Transactions committed in the database (`pg_stat_database.xact_commit`: the bench's few
        /// polls and the daemon's read-only ones included, which flush no WAL).
        var transactions = 0.0
        /// User + system CPU of the daemon's backends (`/proc/<pid>/stat`), seconds.
        var cpuSeconds = 0.0

        func perJob(_ jobs: Int) -> String {
            let n = Double(max(jobs, 1))
            return String(
                format: "WAL %.0f B, %.2f round trips, %.1f statements, %.3f transactions, PostgreSQL CPU %.0f µs",
                walBytes / n, roundTrips / n, statements / n, transactions / n, cpuSeconds / n * 1e6)
        }
    }

    /// Samples the daemon's backends while a run lasts: a backend's CPU is read while it lives (its
    /// /proc entry goes with it), the last reading kept.
    final class BackendCPU: @unchecked Sendable {
        private var seconds: [Int32: Double] = [:]
        private let lock = NSLock()

        /// `database`: every backend of that database but the caller's; nil: the daemon role's backends.
        func sample(_ db: PostgresConnection, database: String? = nil, cpu: (Int32) -> Double) async throws {
            let pids = try await db.query(
                """
                SELECT pid FROM pg_stat_activity
                WHERE backend_type = 'client backend'
                  AND CASE WHEN $2::text IS NULL THEN usename = $1 ELSE datname = $2 AND pid <> pg_backend_pid() END
                """, [Bench.daemonRole, database]
            ).rows.compactMap { try $0.int("pid").map(Int32.init) }
            lock.withLock {
                for pid in pids { seconds[pid] = max(seconds[pid] ?? 0, cpu(pid)) }
            }
        }

        var total: Double { lock.withLock { seconds.values.reduce(0, +) } }
    }

    struct LoadSnapshot {
        var lsn: String
        var toplevel: Double
        var all: Double
        var transactions: Double

        static func take(_ db: PostgresConnection) async throws -> LoadSnapshot {
            // Without pg_stat_statements (the cluster does not preload it) only the statement counts are 0.
            let tracked =
                try await db.query("SELECT to_regclass('pg_stat_statements') IS NOT NULL AS tracked")
                .first?.bool("tracked") ?? false
            let calls = { (filter: String) in
                tracked
                    ? """
                    (SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
                     WHERE r.rolname = $1\(filter))
                    """ : "(SELECT 0::float8 WHERE $1::text IS NOT NULL)"
            }
            let row = try await db.query(
                """
                SELECT pg_current_wal_lsn()::text AS lsn,
                       \(calls(" AND s.toplevel")) AS toplevel,
                       \(calls("")) AS all_calls,
                       (SELECT xact_commit::float8 FROM pg_stat_database WHERE datname = current_database()) AS commits
                """, [Bench.daemonRole]
            ).first
            return LoadSnapshot(
                lsn: try row?.string("lsn") ?? "0/0", toplevel: try row?.double("toplevel") ?? 0,
                all: try row?.double("all_calls") ?? 0, transactions: try row?.double("commits") ?? 0)
        }

        /// `pg_stat_database` is updated when a backend reports (at most every 0.5 s, and at its end):
        /// take `later` that long after the work.
        func load(to later: LoadSnapshot, cpu: BackendCPU, _ db: PostgresConnection) async throws -> DatabaseLoad {
            let wal =
                try await db.query("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8 AS bytes", [later.lsn, lsn])
                .first?.double("bytes") ?? 0
            return DatabaseLoad(
                walBytes: wal, roundTrips: later.toplevel - toplevel, statements: later.all - all,
                transactions: later.transactions - transactions, cpuSeconds: cpu.total)
        }
    }
}
