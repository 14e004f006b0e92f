import Foundation
import SMSJobStore
import Testing

/// The binary applies the migrations compiled into it; they must be exactly the files of
/// `sql/migrations/` (Package.swift and sql/EmbeddedMigrations.swift list them by name).
@Suite("Embedded migrations")
struct EmbeddedMigrationsTests {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("sql/migrations").path

    @Test("the binary embeds every file of sql/migrations/, byte for byte, and needs the last one's version")
    func embeddedEqualsTheFolder() throws {
        let fromFolder = try Migrator.load(directory: Self.folder)
        #expect(
            Migrator.embedded.migrations == fromFolder.migrations,
            "embedded \(Migrator.embedded.migrations.map(\.version)), folder \(fromFolder.migrations.map(\.version)): list a new file in Package.swift and sql/EmbeddedMigrations.swift"
        )
        #expect(SchemaVersion.required == fromFolder.latestVersion)
        #expect(Migrator.embedded.migrations.map(\.version) == Array(1...SchemaVersion.required), "versions without gaps")
    }
}
