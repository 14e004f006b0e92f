import Foundation
import Logging
import PostgresClient
import SMSModel

/// One service's connection to PostgreSQL, kept across statements and re-opened after a failure with
/// a capped exponential backoff; an outage is logged once when it starts and once when it ends, not
/// once per retry. Every service of the engine (claim loop, writer, heartbeat, rescuer, retention,
/// LISTEN) holds one, so each has its own backend and none waits for another's statement.
struct DatabaseSession: Sendable {
    let url: String
    let settings: SessionSettings
    let applicationName: String
    /// What the log calls it: "database", "write-back", "heartbeat", ...
    let what: String
    let logger: Logger
    /// Services whose outage is a degraded mode rather than a stop (LISTEN, rescue, retention) log
    /// it as a warning, the others as an error.
    var quiet = false

    private(set) var connection: PostgresConnection? = nil
    private(set) var failures = 0
    private var since: ContinuousClock.Instant? = nil

    init(
        url: String, settings: SessionSettings, applicationName: String, what: String, logger: Logger,
        quiet: Bool = false
    ) {
        self.url = url
        self.settings = settings
        self.applicationName = applicationName
        self.what = what
        self.logger = logger
        self.quiet = quiet
    }

    /// The wait before the next reconnect: 250 ms doubling to 10 s; none before the first.
    var nextRetryDelay: Duration? {
        guard failures > 0 else { return nil }
        return .milliseconds(min(10_000, 250 * (1 << min(failures - 1, 6))))
    }

    /// The open connection, or a new one after the backoff; nil while the database cannot be reached
    /// (the failure is counted and logged).
    mutating func connect() async -> PostgresConnection? {
        if let connection { return connection }
        if let wait = nextRetryDelay { try? await Task.sleep(for: wait) }
        // Cancelled (a stop's last phase): no new connect, which libpq would wait out regardless.
        if Task.isCancelled { return nil }
        do {
            connection = try await PostgresConnection.connect(url, applicationName: applicationName, session: settings)
        } catch {
            record(error)
        }
        return connection
    }

    /// The open connection, or one attempt at once, without the backoff: for the last statement of a
    /// stop, which must not wait out an outage's backoff inside systemd's stop timeout.
    mutating func connectOnce() async -> PostgresConnection? {
        if let connection { return connection }
        connection = try? await PostgresConnection.connect(url, applicationName: applicationName, session: settings)
        return connection
    }

    /// A statement failed: the session is dropped (a fresh one, maybe on a new primary, is opened by
    /// the next `connect`), and the outage logged if it just began.
    mutating func failed(_ error: any Error) async {
        record(error)
        await connection?.close()
        connection = nil
    }

    /// A statement went through: an outage, if there was one, is over.
    mutating func succeeded() {
        if let since {
            logger.notice(
                "\(what) back",
                metadata: [
                    "after_s": "\(String(format: "%.1f", (ContinuousClock.now - since).seconds))",
                    "failures": "\(failures)",
                ])
        }
        since = nil
        failures = 0
    }

    mutating func close() async {
        await connection?.close()
        connection = nil
    }

    private mutating func record(_ error: any Error) {
        failures += 1
        if since == nil {
            since = .now
            logger.log(
                level: quiet ? .warning : .error, "\(what) unavailable; reconnecting with backoff",
                metadata: ["error": "\(error)"])
        }
    }
}
