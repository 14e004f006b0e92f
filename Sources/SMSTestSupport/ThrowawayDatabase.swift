import Foundation
import Logging
import PostgresClient
import SMSJobStore

/// A database of its own for one test or one bench scenario, in the throwaway cluster whose superuser
/// URL is `admin`, migrated by the migrations the binary embeds (or left empty).
package enum ThrowawayDatabase {
    /// Creates it; returns its name and its URL (the admin URL with the database replaced).
    package static func create(admin: String, prefix: String, migrated: Bool) async throws -> (name: String, url: String) {
        guard let slash = admin.lastIndex(of: "/") else { throw TestSetupError("odd admin URL: \(admin)") }
        let name = "\(prefix)_\(UInt32.random(in: 0..<UInt32.max))_\(ProcessInfo.processInfo.processIdentifier)"
        let connection = try await PostgresConnection.connect(admin)
        do {
            try await connection.execute("CREATE DATABASE \(name)")
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        let url = admin[..<slash] + "/" + name
        if migrated {
            let database = try await PostgresConnection.connect(url, applicationName: "smsd-tests")
            do {
                var logger = Logger(label: "throwaway-database")
                logger.logLevel = .warning
                try await Migrator.embedded.migrate(database, logger: logger)
            } catch {
                await database.close()
                throw error
            }
            await database.close()
        }
        return (name, url)
    }

    /// Drops it, whoever is still connected; errors are ignored (the cluster is thrown away anyway).
    package static func drop(admin: String, name: String) async {
        guard let connection = try? await PostgresConnection.connect(admin) else { return }
        _ = try? await connection.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        await connection.close()
    }
}
