import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show queue and worker state.")
    @OptionGroup var options: CommonOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        let report = try await options.withDatabase("status", code: ExitStatus.unavailable) { db, config in
            try await StatusReport.load(db, heartbeatInterval: config.dispatcher.heartbeat.interval)
        }
        print(json ? try report.json() : report.table(), terminator: json ? "\n" : "")
    }
}
