import GenAuth
import Logging
import SMSEngine
import SMSModel

/// The daemon's whole configuration, validated: the engine's (grouped per service, see
/// `Dispatcher.Configuration`) and the process's own (logging, the metrics endpoint). Every field has
/// one key in `DaemonConfiguration.keys`, which says where its value goes; the YAML file
/// (`config/sms-dispatcher.yaml`), an environment variable `SMSD_<KEY>` (dots and dashes as `_`) and,
/// for secrets, a file in systemd's `$CREDENTIALS_DIRECTORY` named like `genauth-app-secret` can set
/// it. Precedence: environment, then credentials, then the file, then the default.
package struct DaemonConfiguration: Sendable {
    package var dispatcher = Dispatcher.Configuration()
    /// `genauth.app_secret`: accepted (and kept out of logs) for set-ups that carry it; the send-SMS
    /// call in app-id mode sends no secret.
    package var appSecret: String? = nil
    package var logLevel = Logger.Level.info
    /// `host:port` for the Prometheus endpoint; nil: off.
    package var metricsListen: String? = nil
    /// Management-token mode's key, as read: both or neither (the loader checks), then handed to
    /// `dispatcher.genauth.accessKey`.
    var accessKeyID: String? = nil
    var accessKeySecret: String? = nil

    package init() {}

    /// Every key the daemon reads, with what it is for: the source of `check-config` and of the
    /// "unknown key" checks.
    package static var keySpecs: [ConfigKeySpec] { keys.map(\.spec) }

    /// The effective value of a key, for `check-config`; secrets are never shown.
    package func describe(_ key: String) -> String {
        Self.keys.first { $0.spec.name == key }.map { $0.show(self) } ?? "?"
    }
}

/// Never printed whole (it holds the app secret, the access-key secret and maybe a database password):
/// an interpolated or reflected configuration says where to look instead. `check-config` shows every
/// key with secrets redacted.
extension DaemonConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    package var description: String { "DaemonConfiguration(secrets redacted; see `sms-dispatcher check-config`)" }
    package var debugDescription: String { description }
}
