import PostgresClient
import SMSModel

/// Extends the leases of exactly the jobs this process holds (ids with their claim tokens, from
/// memory). A job this process never claimed, or claimed under an earlier token, keeps running out its
/// lease, so a process restarted under the same worker id cannot keep its predecessor's jobs from being
/// rescued.
package struct ExtendLeases: Statement {
    package var held: [JobLease]
    package var lease: Duration

    package init(held: [JobLease], lease: Duration) {
        self.held = held
        self.lease = lease
    }

    package static let sql = """
        WITH mine AS (
            -- SKIP LOCKED: a row the write-back is finishing right now needs no longer lease, and
            -- waiting for it (while the write-back waits for a row locked here) would deadlock.
            SELECT j.id FROM unnest($1::bigint[], $2::bigint[]) AS h(id, token)
            JOIN sms.jobs j ON j.id = h.id AND j.lease_token = h.token AND j.state IS NOT DISTINCT FROM 'running'
            FOR UPDATE OF j SKIP LOCKED
        ), extended AS (
            UPDATE sms.jobs j SET locked_until = now() + make_interval(secs => $3::float8)
            FROM mine WHERE j.id = mine.id
            RETURNING j.id, j.lease_token
        ), leases AS (
            -- The rescue finds expired leases through their claims' rows: a row extends with its jobs,
            -- only when every job still running under it was extended. One left out (let go of by this
            -- process, or locked right now) keeps the row's expiry, so that the rescue looks at the
            -- claim once that job's own lease runs out (it rescues job by job).
            UPDATE sms.leases l SET until = greatest(l.until, now() + make_interval(secs => $3::float8))
            WHERE l.lease_token IN (SELECT DISTINCT e.lease_token FROM extended e)
              AND NOT EXISTS (SELECT 1 FROM unnest(l.job_ids) AS u(id)
                              JOIN sms.jobs j ON j.id = u.id AND j.lease_token = l.lease_token
                                             AND j.state IS NOT DISTINCT FROM 'running'
                              WHERE u.id NOT IN (SELECT e.id FROM extended e))
        )
        SELECT count(*)::int AS extended FROM extended
        """

    package var bindings: [String?] {
        [
            PostgresArray.literal(held.map { Int($0.id) }), PostgresArray.literal(held.map { Int($0.token) }),
            String(lease.seconds),
        ]
    }

    /// Leases extended.
    package func decode(_ rows: PostgresRows) throws -> Int { try rows.first?.int("extended") ?? 0 }
}
