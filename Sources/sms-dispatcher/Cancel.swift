import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel pending jobs by id.")
    @OptionGroup var options: CommonOptions
    @Argument(help: "Job ids.") var ids: [Int]

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("give at least one job id") }
    }

    func run() async throws {
        let results = try await options.withDatabase("cancel") { db, _ in
            try await db.run(CancelJobs(ids: ids.map(Int64.init))).map { CancelResult(id: $0.id, result: $0.result) }
        }
        for entry in results { print("\(entry.id): \(entry.result)") }
        // Exit 1 when any job could not be cancelled, so scripts notice.
        if results.contains(where: { $0.result != .cancelled }) { throw ExitCode(1) }
    }

    struct CancelResult: Sendable {
        let id: Int64
        let result: CancelJobs.Result
    }
}
