import Foundation
import PostgresClient
import SMSJobStore
import SMSModel

/// Following a job on `sms_job_events` (`<id>:<state>[,...]`), with the row as the truth: the
/// notification says when to look, the row says what happened. A lost notification (a reconnecting
/// proxy, a daemon from before this version) costs at most a second: the row is also read once a second.
enum JobEvents {
    enum End {
        /// The job's final row.
        case finished(JobResult.Row)
        /// The deadline passed first (with the last database error, if the database was why).
        case timedOut(lastError: String?)
        /// The row is gone (deleted or purged) before it finished.
        case vanished
    }

    /// Waits for the job's end until `timeout`. A broken connection is replaced (`reconnect`, with a
    /// short pause between tries) until the deadline: a database restart or failover during the wait
    /// is not an answer. `progress` hears every change of a still-pending row (a deferral or a retry).
    static func waitForEnd(
        of id: Int64, on first: PostgresConnection,
        reconnect: () async throws -> PostgresConnection, timeout: Duration,
        progress: (JobResult.Row) -> Void
    ) async -> End {
        let deadline = ContinuousClock.now + timeout
        var db: PostgresConnection? = first
        var last: JobResult.Row? = nil
        var lastError: String? = nil
        defer { if let db { Task { await db.close() } } }
        // Bounded by the deadline: each round waits at most a second.
        while ContinuousClock.now < deadline {
            do {
                let connection: PostgresConnection
                if let db {
                    connection = db
                } else {
                    connection = try await reconnect()
                    try await connection.listen(NotificationChannel.jobEvents.rawValue)
                    db = connection
                }
                guard let row = try await connection.run(JobResult(id: id)) else { return .vanished }
                if row.state.isTerminal { return .finished(row) }
                if row.state == .pending, row.message != last?.message || row.attempts != last?.attempts, row.message != nil {
                    progress(row)
                }
                last = row
                // Until our id is named (or a second passed: the fallback), then read the row again.
                let waitUntil = min(deadline, ContinuousClock.now + .seconds(1))
                while ContinuousClock.now < waitUntil {
                    let received = try await connection.waitForNotifications(timeout: waitUntil - ContinuousClock.now)
                    if received.contains(where: { JobEvent.parse(payload: $0.payload).contains { $0.id == id } }) { break }
                }
            } catch {
                if lastError == nil {
                    FileHandle.standardError.write(
                        Data("database error while waiting (\(error)); reconnecting until the timeout\n".utf8))
                }
                lastError = "\(error)"
                if let broken = db { await broken.close() }
                db = nil
                let pause = min(.milliseconds(500), deadline - ContinuousClock.now)
                if pause > .zero { try? await Task.sleep(for: pause) }
            }
        }
        return .timedOut(lastError: lastError)
    }

    static func describe(_ row: JobResult.Row) -> String {
        func field(_ value: Int?) -> String { value.map(String.init) ?? "-" }
        return "\(row.state.rawValue): statusCode \(field(row.statusCode)), apiCode \(field(row.apiCode)), "
            + "requestId \(row.requestID ?? "-"), message \(row.message ?? "-")"
    }
}
