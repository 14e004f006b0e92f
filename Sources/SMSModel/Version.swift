/// This build's version: in `sms.workers.version`, the user agent and `--version`.
public enum SMSDispatcherVersion {
    public static let current = "0.1.0"
}
