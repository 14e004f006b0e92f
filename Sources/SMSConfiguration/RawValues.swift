import Configuration
import Foundation
import SMSModel

/// Reads every value as a string through swift-configuration (which does the precedence and the
/// secret marking) and parses it here, so that a wrong type is an error naming the key instead of a
/// silent fall back to the default.
final class RawValues {
    let reader: ConfigReader
    let specs: [String: ConfigKeySpec]
    var sources = ConfigSources()

    init(reader: ConfigReader, specs: [ConfigKeySpec]) {
        self.reader = reader
        self.specs = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })
    }

    func string(_ key: String) throws -> String? {
        let secret = specs[key]?.secret ?? false
        // An empty value (SMSD_X=, an empty credential file) counts as unset.
        guard let value = reader.string(forKey: ConfigKey(key), isSecret: secret),
            !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { return nil }
        sources.entries.append((key, secret ? "<redacted>" : value, secret))
        return value
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try string(key) else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigError(key: key, "must be a whole number, not \"\(text)\"")
        }
        guard range.contains(value) else {
            throw ConfigError(key: key, "must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }

    func bool(_ key: String) throws -> Bool? {
        guard let text = try string(key) else { return nil }
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigError(key: key, "must be true or false, not \"\(text)\"")
        }
    }

    func stringArray(_ key: String) throws -> [String]? {
        if let array = reader.stringArray(forKey: ConfigKey(key)) {
            sources.entries.append((key, "[" + array.joined(separator: ", ") + "]", false))
            return array.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        // A single value (or an environment variable) is a comma-separated list.
        return try string(key).map {
            $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }

    func double(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text = try string(key) else { return nil }
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw ConfigError(key: key, "must be a number, not \"\(text)\"")
        }
        guard range.contains(value) else {
            throw ConfigError(key: key, "must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }
}

extension RawValues {
    /// A number of seconds, as a `Duration`.
    func seconds(_ key: String, in range: ClosedRange<Double>) throws -> Duration? {
        try double(key, in: range).map { Duration.seconds(double: $0) }
    }

    /// One of a finite set of names (case-insensitive).
    func choice<T: RawRepresentable & CaseIterable>(_ key: String, as type: T.Type) throws -> T? where T.RawValue == String {
        guard let text = try string(key) else { return nil }
        guard let value = T(rawValue: text.lowercased()) else {
            let names = T.allCases.map(\.rawValue)
            let expected = names.count == 2 ? names.joined(separator: " or ") : "one of " + names.joined(separator: ", ")
            throw ConfigError(key: key, "must be \(expected), not \"\(text)\"")
        }
        return value
    }
}
