import PostgresClient

/// Deletes up to `batch` finished jobs older than `olderThan` (their attempts cascade), oldest first:
/// one statement of operator `purge --older-than` and of retention.
package struct PurgeFinished: Statement {
    package var olderThan: Duration
    package var batch: Int

    package init(olderThan: Duration, batch: Int) {
        self.olderThan = olderThan
        self.batch = batch
    }

    // `sms.purge_finished` (SECURITY DEFINER, for sms_operator and sms_dispatcher, neither of which may
    // DELETE from sms.jobs) holds the statement.
    package static let sql = "SELECT sms.purge_finished($1::float8, $2::int) AS deleted"

    package var bindings: [String?] { [String(olderThan.seconds), String(batch)] }

    /// Jobs deleted; fewer than `batch` means none older are left.
    package func decode(_ rows: PostgresRows) throws -> Int { try rows.single("purge").requiredInt("deleted") }
}

extension PurgeFinished {
    /// Batch after batch until none older are left, or `deadline` passes with more to delete (then
    /// `more` is true): operator `purge` runs it to the end, retention within its time budget.
    package func repeated(
        on db: PostgresConnection, until deadline: ContinuousClock.Instant? = nil
    ) async throws
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
