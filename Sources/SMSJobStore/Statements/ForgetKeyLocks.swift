import PostgresClient

/// Up to `batch` of the reservation's key rows (`sms.key_locks`) that nobody holds now: a reservation
/// inserts the ones it needs again. Small batches, each its own short transaction: a reservation that
/// needs a key being deleted waits for the deleting transaction to end.
package struct ForgetKeyLocks: Statement {
    package var batch: Int

    package init(batch: Int = 1000) { self.batch = batch }

    package static let isPrepared = false
    package static let sql = """
        WITH gone AS (
            DELETE FROM sms.key_locks k
            WHERE k.key IN (SELECT f.key FROM sms.key_locks f LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING 1)
        SELECT count(*)::int AS forgotten FROM gone
        """

    package var bindings: [String?] { [String(batch)] }

    /// Key rows forgotten; fewer than `batch` means none are left that nobody holds.
    package func decode(_ rows: PostgresRows) throws -> Int { try rows.single("forgetting key rows").requiredInt("forgotten") }
}
