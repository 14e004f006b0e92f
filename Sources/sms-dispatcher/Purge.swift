import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Purge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete finished jobs (and their attempts) older than a duration, in batches.")
    @OptionGroup var options: CommonOptions
    @Option(name: .customLong("older-than"), help: "e.g. 30d, 12h, 90m, 3600 (seconds).") var olderThan: String
    @Option(name: .customLong("batch-size"), help: "Rows per statement.") var batchSize = 1000

    func validate() throws {
        guard parseDuration(olderThan) != nil else {
            throw ValidationError("--older-than must be a duration like 30d, 12h or 90m")
        }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() async throws {
        let deleted = try await options.withDatabase("purge") { db, _ in
            try await PurgeFinished(olderThan: .seconds(double: parseDuration(olderThan) ?? 0), batch: batchSize)
                .repeated(on: db).deleted
        }
        print("deleted \(deleted) finished job(s) older than \(olderThan)")
    }
}
