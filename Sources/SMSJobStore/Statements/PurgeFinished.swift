import PostgresClient

/// Deletes up to `batch` finished jobs older than `olderThan` (their attempts cascade), oldest first:
/// one statement of operator `purge --older-than` and of retention.
public struct PurgeFinished: Statement {
    public var olderThan: Duration
    public var batch: Int

    public init(olderThan: Duration, batch: Int) {
        self.olderThan = olderThan
        self.batch = batch
    }

    public static let sql = """
        DELETE FROM sms.jobs WHERE id IN (
            SELECT id FROM sms.jobs
            WHERE finished_at < now() - make_interval(secs => $1::float8)
            ORDER BY finished_at LIMIT $2)
        """

    public var bindings: [String?] { [String(olderThan.seconds), String(batch)] }

    /// Jobs deleted; fewer than `batch` means none older are left.
    public func decode(_ rows: PostgresRows) throws -> Int { rows.affectedRows }
}

extension PurgeFinished {
    /// Batch after batch until none older are left, or `deadline` passes with more to delete (then
    /// `more` is true): operator `purge` runs it to the end, retention within its time budget.
    public func repeated(on db: PostgresConnection, until deadline: ContinuousClock.Instant? = nil) async throws
        -> (deleted: Int, more: Bool)
    {
        var deleted = 0
        while true {
            let now = try await db.run(self)
            deleted += now
            if now < batch { return (deleted, false) }
            if let deadline, ContinuousClock.now >= deadline { return (deleted, true) }
        }
    }
}
