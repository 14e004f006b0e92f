import ArgumentParser
import SMSConfiguration
import SMSJobStore
import SMSModel

struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop sending (all channels, or one) until resumed or for a while.",
        discussion: """
            Stored in sms.controls with the database role, the reason and the end; every live daemon \
            stops claiming that channel's jobs at its next claim and logs the pause within 2 s. Paused \
            jobs stay pending, saying so in their message; their TTL still expires them. Pausing again \
            replaces the reason and the end. Needs the sms_operator role.
            """)
    @OptionGroup var options: CommonOptions
    @Option(help: "Pause only this channel (default: all channels).") var channel: String?
    @Option(help: "Why: shown by status, in the log and on the paused jobs.") var reason: String?
    @Option(name: .customLong("for"), help: "Resume by itself after this long: 90s, 15m, 2h, 1d (default: until resumed).")
    var duration: String?

    func validate() throws {
        if let channel, Channel(rawValue: channel) == nil {
            throw ValidationError("--channel must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let duration, (parseDuration(duration) ?? 0) <= 0 {
            throw ValidationError("--for must be a positive duration such as 90s, 15m, 2h or 1d (got \(duration))")
        }
    }

    func run() async throws {
        let scope = channel.flatMap(Channel.init(rawValue:)).map(SMSModel.Pause.Scope.channel) ?? .all
        let pause = try await options.withDatabase("pause") { db, _ in
            try await db.run(
                PauseChannels(
                    scope: scope, reason: reason,
                    duration: duration.flatMap(parseDuration).map { Duration.seconds(double: $0) }))
        }
        let what = scope.shown
        let until = pause.until.map { " until \(StatusReport.utc($0))" } ?? " until resumed"
        print("paused \(what)\(until) (by \(pause.pausedBy)\(pause.reason.map { ": \($0)" } ?? ""))")
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "End a pause: one channel's, or every pause.",
        discussion: "Daemons are woken at once. Needs the sms_operator role.")
    @OptionGroup var options: CommonOptions
    @Option(help: "Resume only this channel's own pause (default: end every pause).") var channel: String?

    func validate() throws {
        if let channel, Channel(rawValue: channel) == nil {
            throw ValidationError("--channel must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let scope = channel.flatMap(Channel.init(rawValue:)).map(SMSModel.Pause.Scope.channel) ?? .all
        let (ended, still) = try await options.withDatabase("resume") { db, _ in
            (try await db.run(ResumeChannels(scope: scope)), try await db.run(ListPauses()))
        }
        let what = scope.shown
        print(ended == 0 ? "\(what): was not paused" : "resumed \(what)")
        // A channel's own pause ended while the pause of all channels still holds it: say so.
        if case .channel(let channel) = scope, let holding = still.pause(of: channel) {
            print(
                "note: \(channel.rawValue) is still paused by the pause of \(holding.scope.shown) (by \(holding.pausedBy)); `resume` without --channel ends it"
            )
        }
    }
}
