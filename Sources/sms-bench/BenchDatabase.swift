import ArgumentParser
import Foundation
import PostgresClient
import SMSTestSupport

extension Bench {
    /// A new database with the schema, `pg_stat_statements` when the cluster loads it, and the URL the
    /// daemon logs in with (`daemonRole`, a member of `sms_dispatcher` only).
    func freshDatabase(admin: String) async throws -> String {
        // The daemon's own `migrate`, as an operator runs it.
        let url = try await ThrowawayDatabase.create(admin: admin, prefix: "smsd_bench", migrated: false).url
        let migrate = try await ChildProcess.run(
            bin + "/sms-dispatcher", ["migrate"], environment: ["SMSD_DATABASE_URL": url],
            timeout: .seconds(600))
        guard migrate.status == 0 else { throw ValidationError("migrate: \(migrate.output)") }
        let db = try await PostgresConnection.connect(url)
        // Roles are the cluster's: made once, by whichever database comes first.
        try await db.execute(
            """
            DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '\(Self.daemonRole)') THEN
                    CREATE ROLE \(Self.daemonRole) LOGIN IN ROLE sms_dispatcher;
                END IF;
            EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;
            END $$
            """)
        if try await db.query("SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%' AS loaded")
            .first?.bool("loaded") == true
        {
            try await db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        }
        await db.close()
        return url
    }

    /// The same database, as the daemon's role.
    func daemonURL(_ database: String) -> String {
        database.replacingOccurrences(of: "://postgres@", with: "://\(Self.daemonRole)@")
    }
}
