import CLibPQ
import Foundation

/// Keeps the secret of a libpq connection string (a URI's `user:password@` or `password=...`) out of
/// every message: libpq's own parse errors quote the token they could not read, which can be the
/// password itself (`invalid percent-encoded token: "s3cr%zz"`).
public enum ConnInfo {
    /// The passwords `conninfo` carries, raw and percent-decoded, for redaction.
    static func secrets(in conninfo: String) -> [String] {
        var found: [String] = []
        if let scheme = conninfo.range(of: "://") {
            let rest = conninfo[scheme.upperBound...]
            let authority = rest.prefix { $0 != "/" && $0 != "?" }
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                let raw = String(authority[authority.index(after: colon)..<at])
                found.append(raw)
                if let decoded = raw.removingPercentEncoding { found.append(decoded) }
            }
            // password=... in the query string
            if let query = rest.firstIndex(of: "?") {
                for pair in rest[rest.index(after: query)...].split(separator: "&") where pair.hasPrefix("password=") {
                    let raw = String(pair.dropFirst("password=".count))
                    found.append(raw)
                    if let decoded = raw.removingPercentEncoding { found.append(decoded) }
                }
            }
        }
        // key = value form: password=secret or password='sec ret'
        var search = conninfo[...]
        while let range = search.range(of: "password") {
            var rest = search[range.upperBound...].drop { $0 == " " }
            if rest.first == "=" {
                rest = rest.dropFirst().drop { $0 == " " }
                if rest.first == "'" {
                    found.append(String(rest.dropFirst().prefix { $0 != "'" }))
                } else {
                    found.append(String(rest.prefix { $0 != " " }))
                }
            }
            search = search[range.upperBound...]
        }
        return found.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    /// `message` with every secret of `conninfo` replaced by `***`; with `quoted`, every double-quoted
    /// fragment too (libpq's parse errors quote pieces of the string they could not parse).
    public static func redact(_ message: String, conninfo: String, quoted: Bool = false) -> String {
        var text = message
        for secret in secrets(in: conninfo) { text = text.replacingOccurrences(of: secret, with: "***") }
        if quoted {
            var result = ""
            var inside = false
            for character in text {
                if character == "\"" {
                    result.append(character)
                    if !inside { result += "…" }
                    inside.toggle()
                } else if !inside {
                    result.append(character)
                }
            }
            text = result
        }
        return text
    }

    /// The connection string with its password replaced by `***`, for logs.
    public static func redacted(_ conninfo: String) -> String { redact(conninfo, conninfo: conninfo) }

    /// Nil when libpq can parse `conninfo`, else its error with nothing of the string's secrets in it.
    static func parseError(_ conninfo: String) -> String? {
        var error: UnsafeMutablePointer<CChar>? = nil
        guard let options = PQconninfoParse(conninfo, &error) else {
            let message = error.map { String(cString: $0) } ?? "cannot be parsed"
            if let error { PQfreemem(error) }
            return redact(message.trimmingCharacters(in: .whitespacesAndNewlines), conninfo: conninfo, quoted: true)
        }
        PQconninfoFree(options)
        return nil
    }
}
