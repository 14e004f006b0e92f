/// A configuration problem, naming the key at fault. The CLI exits 78 (EX_CONFIG) on it.
package struct ConfigError: Error, Sendable, CustomStringConvertible {
    package let key: String
    package let message: String
    package init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }
    package var description: String { "configuration error: \(key): \(message)" }
}

/// Where each key's value came from, for `check-config`; secrets are redacted here already.
package struct ConfigSources: Sendable {
    package var entries: [(key: String, value: String, secret: Bool)] = []
    /// Valid, but worth an operator's attention (`check-config` prints them, `run` logs them).
    package var warnings: [String] = []
}
