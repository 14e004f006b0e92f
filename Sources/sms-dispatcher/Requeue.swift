import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Requeue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put finished jobs (default: failed and expired) back to pending with fresh attempts.",
        discussion: "The TTL counts from the requeue. Prints the requeued ids.")
    @OptionGroup var options: CommonOptions
    @Option(name: .customLong("state"), help: "States to requeue (repeatable): failed, expired, rejected, cancelled, superseded.")
    var states: [String] = ["failed", "expired"]
    @Option(help: "Only this channel.") var channel: String?
    @Option(name: .customLong("id"), help: "Only these job ids (repeatable).") var ids: [Int] = []
    @Option(name: .customLong("finished-within"), help: "Only jobs finished within this long, e.g. 2h.") var finishedWithin:
        String?
    @Option(help: "At most this many jobs.") var limit = 10_000
    @Flag(name: .customLong("dry-run"), help: "Only print what would be requeued.") var dryRun = false

    func validate() throws {
        let allowed: Set<String> = ["failed", "expired", "rejected", "cancelled", "superseded"]
        if let bad = states.first(where: { !allowed.contains($0) }) {
            throw ValidationError("--state \(bad) cannot be requeued; one of \(allowed.sorted().joined(separator: ", "))")
        }
        if let channel, Channel(rawValue: channel) == nil {
            throw ValidationError("--channel \(channel) is not a GenAuth channel")
        }
        if let finishedWithin, parseDuration(finishedWithin) == nil {
            throw ValidationError("--finished-within must be a duration like 30m, 2h or 7d")
        }
        guard limit > 0 else { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        let requeued = try await options.withDatabase("requeue") { db, _ in
            // `validate()` checked the states and the channel.
            let requeued = try await db.run(
                RequeueJobs(
                    states: states.compactMap(JobState.init(rawValue:)), channel: channel.flatMap(Channel.init(rawValue:)),
                    ids: ids.map(Int64.init),
                    finishedWithin: finishedWithin.flatMap(parseDuration).map { Duration.seconds(double: $0) },
                    limit: limit, dryRun: dryRun))
            // Requeued rows are not inserts: wake the idle daemons ourselves.
            if !dryRun && !requeued.isEmpty { try await db.run(NotifyJobsAvailable()) }
            return requeued
        }
        print(
            "\(dryRun ? "would requeue" : "requeued") \(requeued.count) job(s)"
                + (requeued.isEmpty ? "" : ": " + requeued.map(String.init).joined(separator: " ")))
    }
}
