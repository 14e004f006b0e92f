import PostgresClient

/// The one session advisory lock sms-dispatcher takes: `migrate`'s, so two hosts migrating at once take
/// turns (before the schema exists there is no row to lock). The daemon takes none: an advisory lock is
/// anyone's to take, so its locks are rows only its roles may lock (`sms.key_locks`, `sms.fraud_state`).
package enum AdvisoryLock: Int64, Sendable, CaseIterable {
    /// Migrations: two hosts migrating at once take turns.
    case migrations = 7_212_330_011

    /// Waits for the lock.
    package func lock(on db: PostgresConnection) async throws {
        try await db.query("SELECT pg_advisory_lock($1)", [String(rawValue)])
    }

    /// Takes the lock if nobody holds it; false if another session does.
    package func tryLock(on db: PostgresConnection) async throws -> Bool {
        try await db.query("SELECT pg_try_advisory_lock($1) AS locked", [String(rawValue)]).first?.bool("locked") == true
    }

    package func unlock(on db: PostgresConnection) async throws {
        _ = try await db.query("SELECT pg_advisory_unlock($1)", [String(rawValue)])
    }
}
