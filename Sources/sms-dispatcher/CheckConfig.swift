import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Load and validate the configuration; print it with secrets redacted.")
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let (config, sources) = try await options.load(requireGenAuth: true)
        print("configuration OK\(options.configFile.map { " (file: \($0))" } ?? " (no file)")")
        let set = Dictionary(sources.entries.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        for spec in DaemonConfiguration.keySpecs {
            let value = set[spec.name] ?? "(default) " + config.describe(spec.name)
            print("  \(spec.name) = \(value)")
        }
        for warning in sources.warnings { print("warning: \(warning)") }
    }
}
