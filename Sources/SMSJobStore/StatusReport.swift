import Foundation
import PostgresClient
import SMSModel

/// What `sms-dispatcher status` shows: `sms.queue_stats` and `sms.workers`, with warnings an operator
/// should not have to work out: workers whose heartbeat stopped, and a backlog that is getting old.
package struct StatusReport: Sendable, Codable {
    package let queue: [QueueStatsRow]
    package let workers: [WorkerRow]
    /// Operators' pauses in force (`sms.controls`).
    package let pauses: [Pause]
    /// The fraud guard's anomaly blocks in force, and its decisions per rule in the last hour.
    package let fraudBlocks: [FraudBlock]
    package let fraudDecisions: [FraudDecisionCounts.Count]
    package let totals: [String: Int]
    package let warnings: [String]

    /// A worker is stale after this many missed heartbeats.
    static let staleHeartbeats = 3.0
    /// Pending jobs older than this (seconds) mean the daemons are not keeping up.
    static let backlogAgeWarning = 60.0

    package static func load(_ db: PostgresConnection, heartbeatInterval: Duration) async throws -> StatusReport {
        let queue = try await db.run(QueueStats())
        let workers = try await db.run(ListWorkers())
        let pauses = try await db.run(ListPauses()).all
        let fraudBlocks = try await db.run(ListFraudBlocks())
        var warnings: [String] = []
        let fraudDecisions: [FraudDecisionCounts.Count]
        switch await db.fraudDecisionsIfReadable() {
        case .success(let counts):
            fraudDecisions = counts
        case .failure(let error):
            fraudDecisions = []
            warnings.append(
                "the fraud guard's decisions could not be read (a standby cannot read its unlogged counters): \(error)")
        }
        var totals: [String: Int] = [:]
        for state in JobState.allCases { totals[state.rawValue] = 0 }
        totals["deferred"] = 0
        for row in queue {
            totals[row.state, default: 0] += row.jobs
            totals["deferred", default: 0] += row.deferred
        }
        for worker in workers where worker.heartbeatAgeSeconds > heartbeatInterval.seconds * staleHeartbeats {
            warnings.append("worker \(worker.id) is stale: last heartbeat \(Int(worker.heartbeatAgeSeconds)) s ago")
        }
        for worker in workers {
            if let failing = worker.oldestUnwrittenSeconds {
                warnings.append(
                    "worker \(worker.id) cannot write back: \(worker.unwritten) outcomes waiting, writes failing for \(Int(failing)) s (see its log)"
                )
            }
        }
        for (id, rows) in Dictionary(grouping: workers, by: \.id) where rows.count > 1 {
            warnings.append("\(rows.count) running daemons share the worker id \(id): give each its own worker.id")
        }
        let oldest = queue.compactMap(\.oldestPendingAgeSeconds).max() ?? 0
        let due = queue.reduce(0) { $0 + $1.due }
        if due > 0 && oldest > backlogAgeWarning {
            warnings.append("backlog: \(due) due jobs, the oldest pending for \(Int(oldest)) s")
        }
        if due > 0 && workers.isEmpty {
            warnings.append("\(due) jobs are due and no daemon is running")
        }
        return StatusReport(
            queue: queue, workers: workers, pauses: pauses, fraudBlocks: fraudBlocks,
            fraudDecisions: fraudDecisions, totals: totals, warnings: warnings)
    }

    package func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    package func table() -> String {
        var out = "Jobs by state: "
        out += JobState.allCases.map { "\($0.rawValue)=\(totals[$0.rawValue] ?? 0)" }.joined(separator: " ")
        out += " (deferred by the throttle: \(totals["deferred"] ?? 0))\n\n"
        out += Self.render(
            header: ["CHANNEL", "STATE", "JOBS", "DUE", "DEFERRED", "OLDEST PENDING", "SENT 1m", "SENT 1h", "PAUSED"],
            rows: queue.map { row in
                [
                    row.channel, row.state, String(row.jobs), String(row.due), String(row.deferred),
                    row.oldestPendingAgeSeconds.map { String(format: "%.1fs", $0) } ?? "-",
                    String(row.sentLastMinute), String(row.sentLastHour), row.paused ? "yes" : "-",
                ]
            })
        out += "\n"
        if pauses.isEmpty {
            out += "Pauses: none\n"
        } else {
            out += Self.render(
                header: ["PAUSED", "BY", "SINCE", "UNTIL", "REASON"],
                rows: pauses.map { pause in
                    [
                        pause.scope.shown, pause.pausedBy, Self.utc(pause.since),
                        pause.until.map(Self.utc) ?? "resumed", pause.reason ?? "-",
                    ]
                })
        }
        out += "\n"
        if fraudBlocks.isEmpty {
            out += "Fraud guard blocks: none\n"
        } else {
            out += Self.render(
                header: ["FRAUD BLOCK", "KEY", "SINCE", "UNTIL", "REASON"],
                rows: fraudBlocks.map { block in
                    [block.scope.rawValue, block.key, Self.utc(block.since), Self.utc(block.until), block.reason]
                })
        }
        out += "Fraud guard decisions, last hour: "
        out +=
            fraudDecisions.isEmpty
            ? "none\n"
            : fraudDecisions.map { "\($0.rule) \($0.decision)=\($0.count)" }.joined(separator: " ") + "\n"
        out += "\n"
        if workers.isEmpty {
            out += "Workers: none running\n"
        } else {
            out += Self.render(
                header: [
                    "WORKER", "HOST", "PID", "VERSION", "STARTED", "HEARTBEAT", "IN FLIGHT", "CLAIMED", "SENT",
                    "FAILED", "RETRIED", "REJECTED", "EXPIRED", "DEFERRED", "SUPERSEDED", "UNWRITTEN",
                ],
                rows: workers.map { w in
                    [
                        w.id, w.host, String(w.pid), w.version, w.startedAt, String(format: "%.1fs ago", w.heartbeatAgeSeconds),
                        String(w.inFlight), String(w.claimed), String(w.sent), String(w.failed), String(w.retried),
                        String(w.rejected), String(w.expired), String(w.deferred), String(w.superseded), String(w.unwritten),
                    ]
                })
        }
        for warning in warnings { out += "\nWARNING: \(warning)" }
        if !warnings.isEmpty { out += "\n" }
        return out
    }

    package static func utc(_ epoch: Double) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: epoch))
    }

    static func render(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces) + "\n"
        }
        return line(header) + rows.map(line).joined()
    }
}
