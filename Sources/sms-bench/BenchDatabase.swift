import ArgumentParser
import PostgresClient

extension Bench {
    func freshDatabase(admin: String) async throws -> String {
        let connection = try await PostgresConnection.connect(admin)
        let name = "smsd_bench_\(UInt32.random(in: 0..<UInt32.max))"
        try await connection.execute("CREATE DATABASE \(name)")
        await connection.close()
        let url = admin[..<admin.lastIndex(of: "/")!] + "/" + name
        let migrate = try runToEnd(bin + "/sms-dispatcher", ["migrate", "--sql-dir", "sql"], environment: ["SMSD_DATABASE_URL": url])
        guard migrate.contains("schema is at version") else { throw ValidationError("migrate: \(migrate)") }
        return url
    }
}
