import CLibPQ
import Foundation

/// Keeps the secret of a libpq connection string (a URI's `user:password@`, `?password=`, or
/// `password=...`) out of every message: libpq's own parse errors quote the token they could not read,
/// which can be the password itself (`invalid percent-encoded token: "s3cr%zz"`).
package enum ConnInfo {
    /// Whether `conninfo` carries a password (then it is a secret wherever it is stored).
    package static func hasPassword(_ conninfo: String) -> Bool { !secretRanges(in: conninfo).isEmpty }

    /// Where `conninfo` holds a password, read the way libpq reads it (so a `?` or `@` inside a URI's
    /// password does not hide it from us while libpq still takes it as the password). Unicode scalars,
    /// not Characters: a combining mark after a delimiter must not glue the two together.
    static func secretRanges(in conninfo: String) -> [Range<String.Index>] {
        let text = conninfo.unicodeScalars
        var ranges: [Range<String.Index>] = []
        if let scheme = ["postgresql://", "postgres://"].first(where: { conninfo.hasPrefix($0) }) {
            let start = text.index(text.startIndex, offsetBy: scheme.unicodeScalars.count)
            // libpq: userinfo ends at the first '@' before any '/'; the password runs from the first ':'.
            let authorityEnd = text[start...].firstIndex(of: "/") ?? text.endIndex
            let userinfoEnd = text[start..<authorityEnd].firstIndex(of: "@")
            if let at = userinfoEnd {
                if let colon = text[start..<at].firstIndex(of: ":") {
                    ranges.append(text.index(after: colon)..<at)
                }
                // A raw '@' in the password: libpq takes the rest as the host and quotes it in
                // "could not translate host name", so what lies up to the last '@' is secret too.
                let hostEnd = text[at..<authorityEnd].firstIndex(of: "?") ?? authorityEnd
                if let lastAt = text[at..<hostEnd].lastIndex(of: "@"), lastAt > at {
                    ranges.append(text.index(after: at)..<text.index(after: lastAt))
                }
            }
            // The query starts after the userinfo: a '?' inside the password is the password's.
            let hostStart = userinfoEnd.map { text.index(after: $0) } ?? start
            if let query = text[hostStart...].firstIndex(of: "?") {
                var pairStart = text.index(after: query)
                while pairStart < text.endIndex {
                    let pairEnd = text[pairStart...].firstIndex(of: "&") ?? text.endIndex
                    if let equals = text[pairStart..<pairEnd].firstIndex(of: "="),
                        isSecretKeyword(String(text[pairStart..<equals]).removingPercentEncoding ?? "")
                    {
                        ranges.append(text.index(after: equals)..<pairEnd)
                    }
                    pairStart = pairEnd < text.endIndex ? text.index(after: pairEnd) : pairEnd
                }
            }
        } else {
            ranges += keywordValueSecretRanges(text)
        }
        return ranges.filter { !$0.isEmpty }
    }

    private static func isSecretKeyword(_ keyword: String) -> Bool {
        keyword == "password" || keyword == "sslpassword"
    }

    /// libpq's isspace: space, \t \n \v \f \r.
    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value == 32 || (9...13).contains(scalar.value)
    }

    /// `keyword = value` pairs as libpq's conninfo_parse reads them: values unquoted (ending at white
    /// space) or single-quoted, with backslash escaping the next character in both.
    private static func keywordValueSecretRanges(_ text: String.UnicodeScalarView) -> [Range<String.Index>] {
        var ranges: [Range<String.Index>] = []
        var index = text.startIndex
        func skipSpaces() { while index < text.endIndex, isSpace(text[index]) { index = text.index(after: index) } }
        while true {
            skipSpaces()
            guard index < text.endIndex else { break }
            let keywordStart = index
            while index < text.endIndex, text[index] != "=", !isSpace(text[index]) { index = text.index(after: index) }
            let keyword = String(text[keywordStart..<index])
            skipSpaces()
            guard index < text.endIndex, text[index] == "=" else { break }  // libpq refuses the string too
            index = text.index(after: index)
            skipSpaces()
            let quoted = index < text.endIndex && text[index] == "'"
            if quoted { index = text.index(after: index) }
            let valueStart = index
            while index < text.endIndex {
                let scalar = text[index]
                if scalar == "\\" {
                    index = text.index(after: index)
                    if index < text.endIndex { index = text.index(after: index) }
                    continue
                }
                if quoted ? scalar == "'" : isSpace(scalar) { break }
                index = text.index(after: index)
            }
            if isSecretKeyword(keyword) { ranges.append(valueStart..<index) }
            if quoted, index < text.endIndex { index = text.index(after: index) }
        }
        return ranges
    }

    /// The secrets `conninfo` carries as they may appear in a message: raw, percent-decoded (URI) and
    /// unescaped (key=value), longest first so a shorter one never leaves part of a longer one behind.
    static func secrets(in conninfo: String) -> [String] {
        var found: Set<String> = []
        for range in secretRanges(in: conninfo) {
            let raw = String(conninfo.unicodeScalars[range])
            found.insert(raw)
            if let decoded = raw.removingPercentEncoding { found.insert(decoded) }
            var unescaped = String.UnicodeScalarView()
            var escaping = false
            for scalar in raw.unicodeScalars {
                if !escaping && scalar == "\\" {
                    escaping = true
                    continue
                }
                escaping = false
                unescaped.append(scalar)
            }
            found.insert(String(unescaped))
        }
        return found.filter { !$0.isEmpty }.sorted { $0.unicodeScalars.count > $1.unicodeScalars.count }
    }

    /// `message` with every secret of `conninfo` replaced by `***` (wherever it appears: a short password
    /// may blank unrelated text too, which is the safe side); with `quoted`, every double-quoted fragment
    /// becomes `"…"` as well (for libpq's parse errors, which quote pieces of the string they could not parse).
    package static func redact(_ message: String, conninfo: String, quoted: Bool = false) -> String {
        var text = message
        for secret in secrets(in: conninfo) { text = text.replacingOccurrences(of: secret, with: "***") }
        if quoted {
            var result = String.UnicodeScalarView()
            var inside = false
            for scalar in text.unicodeScalars {
                if scalar == "\"" {
                    result.append(scalar)
                    if !inside { result.append("…") }
                    inside.toggle()
                } else if !inside {
                    result.append(scalar)
                }
            }
            text = String(result)
        }
        return text
    }

    /// The connection string with its password replaced by `***` in place, for logs:
    /// `postgresql://u:***@h/db`, `host=h password='***'`.
    package static func redacted(_ conninfo: String) -> String {
        let text = conninfo.unicodeScalars
        var result = String.UnicodeScalarView()
        var cursor = text.startIndex
        for range in secretRanges(in: conninfo).sorted(by: { $0.lowerBound < $1.lowerBound }) where range.lowerBound >= cursor {
            result.append(contentsOf: text[cursor..<range.lowerBound])
            result.append(contentsOf: "***".unicodeScalars)
            cursor = range.upperBound
        }
        result.append(contentsOf: text[cursor...])
        return String(result)
    }

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
