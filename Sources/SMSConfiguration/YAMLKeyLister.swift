import Foundation
import Yams

/// Lists the dotted leaf keys of a YAML file (`genauth: {host: …}` → `genauth.host`), so a misspelt key
/// fails start-up instead of being silently ignored. swift-configuration answers lookups by key but
/// does not enumerate a file's keys, hence this small walk over Yams' tree.
enum YAMLKeyLister {
    static func keys(inFile path: String) throws -> [String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let node = try Yams.compose(yaml: text) else { return [] }
        var keys: [String] = []
        try walk(node, prefix: [], into: &keys)
        return keys
    }

    private static func walk(_ node: Node, prefix: [String], into keys: inout [String]) throws {
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard let name = key.string else {
                    throw ConfigError(key: (prefix + ["?"]).joined(separator: "."), "YAML keys must be strings")
                }
                try walk(value, prefix: prefix + [name], into: &keys)
            }
        case .scalar(let scalar)
        where scalar.tag.rawValue == Tag.Name.null.rawValue || (scalar.string.isEmpty && scalar.style == .plain):
            // An empty section (`metrics:` with its keys commented out) or an explicit null: nothing set.
            return
        default:
            if prefix.isEmpty {
                throw ConfigError(key: "--config", "the configuration file must be a YAML mapping of keys")
            }
            keys.append(prefix.joined(separator: "."))
        }
    }
}
