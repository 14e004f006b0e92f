import PostgresClient

/// The cluster-wide session advisory locks sms-dispatcher takes, in one place so two never share a key.
/// The SQL takes transaction locks of its own, kept clear of these: the phone keys' (hashed with seed
/// 7_212_330_012) and the fraud guard's keys' (seed 7_212_330_013) in the reservation, and the fraud
/// evaluator's 7_212_330_014 (`sms.fraud_evaluate`, sql/0010_fraud.sql).
public enum AdvisoryLock: Int64, Sendable, CaseIterable {
    /// Migrations: two hosts migrating at once take turns.
    case migrations = 7_212_330_011
    /// Retention: one daemon of the cluster deletes at a time.
    case retention = 7_212_330_012

    /// Waits for the lock.
    public func lock(on db: PostgresConnection) async throws {
        try await db.query("SELECT pg_advisory_lock($1)", [String(rawValue)])
    }

    /// Takes the lock if nobody holds it; false if another session does.
    public func tryLock(on db: PostgresConnection) async throws -> Bool {
        try await db.query("SELECT pg_try_advisory_lock($1) AS locked", [String(rawValue)]).first?.bool("locked") == true
    }

    public func unlock(on db: PostgresConnection) async throws {
        _ = try await db.query("SELECT pg_advisory_unlock($1)", [String(rawValue)])
    }
}
