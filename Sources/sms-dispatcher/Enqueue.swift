import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Insert one job and print its id.")
    @OptionGroup var options: CommonOptions
    @Option(help: "One of: \(Channel.allCases.map(\.rawValue).joined(separator: ", ")).") var channel: String
    @Option(help: "National number, digits only.") var phone: String
    @Option(name: .customLong("country-code"), help: "+CC; omit for mainland China.") var countryCode: String?
    @Option(help: "Higher is sent first.") var priority: Int?
    @Option(name: .customLong("idempotency-key"), help: "A repeat with the same key returns the first job's id.") var idempotencyKey: String?
    @Option(name: .customLong("expires-in"), help: "Seconds from now after which it must not be sent.") var expiresIn: Double?

    func validate() throws {
        guard Channel(rawValue: channel) != nil else {
            throw ValidationError("--channel must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let priority, !(Int(Int16.min)...Int(Int16.max)).contains(priority) {
            throw ValidationError("--priority must fit in a smallint")
        }
        if let expiresIn, !expiresIn.isFinite {
            throw ValidationError("--expires-in must be a number of seconds")
        }
    }

    func run() async throws {
        let id = try await options.withDatabase("enqueue") { db, _ in
            // `validate()` checked the channel.
            try await db.run(EnqueueJob(channel: Channel(rawValue: channel) ?? .login, phoneNumber: phone,
                                        countryCode: countryCode, priority: priority, idempotencyKey: idempotencyKey,
                                        expiresIn: expiresIn.map { Duration.seconds(double: $0) })).id
        }
        print(id)
    }
}
