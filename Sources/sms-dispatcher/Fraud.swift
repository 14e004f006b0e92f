import ArgumentParser
import Foundation
import SMSJobStore
import SMSModel

/// `sms-dispatcher fraud list|unblock|allow`: the fraud guard's blocks and allow-list.
struct Fraud: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The fraud guard: its blocks in force, its decisions, and the allow-list.",
        discussion: """
            Anomaly blocks (a number prefix or a country far above its baseline with almost no codes \
            verified) are made by the daemons; an operator ends one with `unblock` and exempts test \
            numbers or known good ranges with `allow`. `list` needs sms_monitor; `unblock` and `allow` \
            need sms_operator.
            """,
        subcommands: [List.self, Unblock.self, Allow.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Blocks in force, the allow-list, and the last hour's decisions per rule.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            let (blocks, allowed, decisions) = try await options.withDatabase("fraud list") { db, _ in
                (try await db.run(ListFraudBlocks()), try await db.run(ListFraudAllowed()), await db.fraudDecisionsIfReadable())
            }
            print("blocks in force: \(blocks.count)")
            for block in blocks {
                print(
                    "  \(block.scope.rawValue) \(block.key)  since \(StatusReport.utc(block.since))  until \(StatusReport.utc(block.until))  \(block.reason)"
                )
            }
            print("allow-list: \(allowed.count)")
            for entry in allowed {
                print(
                    "  \(entry.prefix)  added by \(entry.addedBy) \(StatusReport.utc(entry.addedAt))\(entry.note.map { "  \($0)" } ?? "")"
                )
            }
            switch decisions {
            case .success(let counts):
                print("decisions in the last hour (cluster): \(counts.isEmpty ? "none" : "")")
                for count in counts {
                    print("  \(count.rule) \(count.decision): \(count.count)")
                }
            case .failure(let error):
                print("decisions in the last hour: unavailable (a standby cannot read the guard's unlogged counters): \(error)")
            }
        }
    }

    struct Unblock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End a block now: a prefix (+86 1380013 or +861380013) or a country (+62).",
            discussion: "The daemons do not block the same key again for one block time (fraud.block_minutes).")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The blocked prefix or country, as `fraud list` shows it.") var prefix: String

        func run() async throws {
            let ended = try await options.withDatabase("fraud unblock") { db, _ in
                try await db.run(UnblockFraud(key: prefix))
            }
            if ended == 0 {
                // Exit 1, as `cancel` of a job it cannot cancel: a script unblocking a key learns it held none.
                print("\(prefix): no block in force")
                throw ExitCode.failure
            }
            print("unblocked \(prefix)")
        }
    }

    struct Allow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let numbers starting with PREFIX pass the guard (test numbers, known good ranges).",
            discussion: "Allowed numbers are neither limited, blocked nor counted. --remove takes a prefix off the list.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "+ and the country code, then any digits: +4470090, +1 555 0100.") var prefix: String
        @Option(help: "Why (shown by `fraud list`).") var note: String?
        @Flag(help: "Take PREFIX off the allow-list.") var remove = false

        func validate() throws {
            let compact = prefix.replacingOccurrences(of: " ", with: "")
            guard compact.first == "+", compact.count >= 2, compact.count <= 16,
                compact.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber }), compact.dropFirst().first != "0"
            else {
                throw ValidationError(
                    "PREFIX must be + and the country code, then digits (e.g. +4470090), not \(prefix.prefix(40))")
            }
        }

        func run() async throws {
            if remove {
                let removed = try await options.withDatabase("fraud allow --remove") { db, _ in
                    try await db.run(DisallowFraudPrefix(prefix: prefix))
                }
                if !removed {
                    print("\(prefix): not on the allow-list")
                    throw ExitCode.failure
                }
                print("removed \(prefix) from the allow-list")
            } else {
                let stored = try await options.withDatabase("fraud allow") { db, _ in
                    try await db.run(AllowFraudPrefix(prefix: prefix, note: note))
                }
                print("allowed \(stored)")
            }
        }
    }
}
