import Logging
import SMSConfiguration
import SMSEngine
import ServiceLifecycle
import UnixSignals

extension Run {
    /// SIGHUP (`systemctl reload`): reads the configuration again, from the same file and environment
    /// with the same loader as the start, and puts the live keys' new values in force. One reload at a
    /// time, in the order the signals came. The keys' reload classes (SMSConfiguration) decide what
    /// changes; this only reads, logs and hands over.
    struct Reloader: Service, CustomStringConvertible {
        /// ServiceGroup logs its services at start (debug): never their configuration, which holds secrets.
        var description: String { "Reloader(SIGHUP, \(options.configFile ?? "environment only"))" }

        let options: CommonOptions
        /// As started; each reload's result replaces it (in `run()`).
        let initial: DaemonConfiguration
        let dispatcher: Dispatcher
        let notifier: SystemdNotifier
        let hangups: UnixSignalsSequence
        let logger: Logger

        func run() async throws {
            var running = initial
            for await _ in hangups.cancelOnGracefulShutdown() {
                running = await reload(running)
            }
        }

        /// One reload; returns the configuration in force afterwards (the running one if the file
        /// was refused).
        func reload(_ running: DaemonConfiguration) async -> DaemonConfiguration {
            let file = options.configFile ?? "(no file; environment only)"
            notifier.reloading(status: "reloading the configuration from \(file)")
            defer { notifier.ready(status: "dispatching as \(dispatcher.identity.id); configuration reloaded from \(file)") }
            let new: DaemonConfiguration
            do {
                new = try await options.loadOrThrow(requireGenAuth: true).0
            } catch {
                // Nothing changes: the running configuration stays whole, not half of each.
                let key = (error as? ConfigError)?.key ?? "?"
                let message = (error as? ConfigError)?.message ?? "\(error)"
                logger.error(
                    "configuration reload refused; the running configuration stays: \(key): \(message)",
                    metadata: ["key": "\(key)", "file": "\(file)"])
                return running
            }
            let change = running.change(to: new)
            if !change.needsRestart.isEmpty {
                // Names only: some of these values are secrets.
                logger.warning(
                    "configuration reload: these keys take effect only at a restart and keep their running values",
                    metadata: ["keys": "\(change.needsRestart.joined(separator: ","))", "file": "\(file)"])
            }
            dispatcher.apply(change.applied.dispatcher)
            processLogLevel.level = change.applied.logLevel
            logger.notice(
                change.live.isEmpty ? "configuration reloaded: no live key changed" : "configuration reloaded",
                metadata: ["changed": "\(change.live.joined(separator: ","))", "file": "\(file)"])
            return change.applied
        }
    }
}
