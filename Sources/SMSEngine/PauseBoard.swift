import Logging
import Metrics
import SMSModel
import Synchronization

/// The pauses this daemon knows of, for its log, metrics and systemd status. Not what enforces a
/// pause: the claim reads `sms.controls` itself, so a pause holds from its commit. Refreshed at once
/// on `NOTIFY sms_controls` (WakeSource) and on every heartbeat, the fallback for a lost notification.
package final class PauseBoard: Sendable {
    private let current = Mutex(Pauses())
    private let logger: Logger
    /// `smsd_channel_paused{channel}`: 1 while the channel is paused (by its own pause or all channels').
    private let gauges: [Channel: Gauge] = Dictionary(
        uniqueKeysWithValues: Channel.allCases.map {
            ($0, Gauge(label: "smsd_channel_paused", dimensions: [("channel", $0.rawValue)]))
        })

    package init(logger: Logger) {
        self.logger = logger
        for gauge in gauges.values { gauge.record(0) }
    }

    package var pauses: Pauses { current.withLock { $0 } }

    /// Takes the database's view; logs each pause that began or changed and each that ended.
    package func update(_ fresh: Pauses) {
        let previous = current.withLock { value in
            defer { value = fresh }
            return value
        }
        guard previous != fresh else { return }
        for pause in fresh.added(since: previous) {
            logger.notice(
                "paused: \(pause.scope.shown) by \(pause.pausedBy)",
                metadata: [
                    "channel": "\(pause.scope.stored)", "reason": "\(pause.reason ?? "")",
                    "until": "\(pause.until.map { "\($0)" } ?? "resumed")",
                ])
        }
        let stillPaused = Set(fresh.all.map(\.scope))
        for pause in previous.all where !stillPaused.contains(pause.scope) {
            logger.notice(
                "resumed: \(pause.scope.shown)",
                metadata: [
                    "channel": "\(pause.scope.stored)"
                ])
        }
        for channel in Channel.allCases {
            gauges[channel]?.record(fresh.pause(of: channel) == nil ? 0 : 1)
        }
    }
}
