import Foundation
import Logging
import Synchronization

/// One line per event on stderr, `key=value` metadata sorted by key. Under systemd (`$JOURNAL_STREAM`
/// set) each line starts with the syslog priority `<N>`, which journald turns into the entry's
/// priority, and carries no timestamp (the journal has its own). Elsewhere: timestamp and level.
/// Call sites keep phone numbers masked (`maskPhone`) and never pass secrets.
///
/// Every handler of the process reads one `SharedLevel`, so a reload's `log.level` (SIGHUP) reaches
/// the loggers the services made copies of at start, from their next line on.
package struct DaemonLogHandler: LogHandler {
    /// The process's log level, changeable while loggers made from it are in use. An atomic: it is
    /// read for every line logged or not.
    package final class SharedLevel: Sendable {
        private let index: Atomic<Int>

        package init(_ level: Logger.Level) {
            index = Atomic(Self.index(of: level))
        }

        package var level: Logger.Level {
            get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
            set { index.store(Self.index(of: newValue), ordering: .relaxed) }
        }

        private static func index(of level: Logger.Level) -> Int {
            Logger.Level.allCases.firstIndex(of: level)!
        }
    }

    package var metadata: Logger.Metadata = [:]
    package let journal: Bool
    private let shared: SharedLevel
    /// Set on one logger (`logger.logLevel = …`): that logger's own level, which a reload leaves alone.
    private var override: Logger.Level? = nil

    package var logLevel: Logger.Level {
        get { override ?? shared.level }
        set { override = newValue }
    }

    package init(level: SharedLevel, journal: Bool) {
        self.shared = level
        self.journal = journal
    }

    /// journald sets `JOURNAL_STREAM` for services whose stderr it collects.
    package static func underJournal(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        !(environment["JOURNAL_STREAM"] ?? "").isEmpty
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line =
            journal
            ? "<\(Self.syslogPriority(event.level))>"
            : Date().formatted(.iso8601) + " " + event.level.rawValue + " "
        line += event.message.description
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " " + key + "=" + Self.quoted("\(value)")
        }
        line += "\n"
        // One write per line, so lines from concurrent tasks never interleave.
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else {
            return value
        }
        return "\""
            + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n") + "\""
    }
}
