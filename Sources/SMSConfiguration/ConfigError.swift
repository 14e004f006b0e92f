/// A configuration problem, naming the key at fault. The CLI exits 78 (EX_CONFIG) on it.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let key: String
    public let message: String
    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { "configuration error: \(key): \(message)" }
}

/// Where each key's value came from, for `check-config`; secrets are redacted here already.
public struct ConfigSources: Sendable {
    public var entries: [(key: String, value: String, secret: Bool)] = []
    /// Valid, but worth an operator's attention (`check-config` prints them, `run` logs them).
    public var warnings: [String] = []
}
