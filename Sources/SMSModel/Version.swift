/// This build's version: in `sms.workers.version`, the user agent and `--version`.
package enum SMSDispatcherVersion {
    package static let current = "0.1.0"
}
