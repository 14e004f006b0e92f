/// Where GenAuth is: parsed once from the configured host URL. Public so the configuration can be
/// checked with the very parser the connections use (what passes there is what they can reach).
package struct GenAuthEndpoint: Sendable, Equatable {
    package let tls: Bool
    package let host: String
    package let port: Int
    /// Path prefix from the configured host URL, without a trailing slash ("" for none).
    package let basePath: String

    /// Parses `http(s)://host[:port][/prefix]`.
    package init(url: String) throws {
        var rest = Substring(url)
        if rest.lowercased().hasPrefix("https://") {
            tls = true
            rest = rest.dropFirst(8)
        } else if rest.lowercased().hasPrefix("http://") {
            tls = false
            rest = rest.dropFirst(7)
        } else {
            throw HTTPCallError(
                code: .connectFailed, description: "GenAuth host \(Self.shown(url)) is not an http:// or https:// URL")
        }
        let authority = rest.prefix { $0 != "/" }
        var path = String(rest.dropFirst(authority.count))
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
        if authority.hasPrefix("[") {
            // [IPv6]:port
            guard let close = authority.firstIndex(of: "]") else {
                throw HTTPCallError(
                    code: .connectFailed, description: "GenAuth host \(Self.shown(url)): unterminated IPv6 address")
            }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : (tls ? 443 : 80)
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            port = Int(authority[authority.index(after: colon)...]) ?? -1
        } else {
            host = String(authority)
            port = tls ? 443 : 80
        }
        guard !host.isEmpty, (1...65535).contains(port) else {
            throw HTTPCallError(code: .connectFailed, description: "GenAuth host \(Self.shown(url)) has no valid host and port")
        }
        // A name or an address; no user info, query or fragment (they would end up in the request).
        let hostCharacters =
            authority.hasPrefix("[")
            ? Set("0123456789abcdefABCDEF:.")
            : Set(
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
        guard host.allSatisfy(hostCharacters.contains), !basePath.contains(where: { "?#% ".contains($0) }) else {
            throw HTTPCallError(
                code: .connectFailed,
                description:
                    "GenAuth host \(Self.shown(url)) must be scheme://host[:port][/path], without user info, query or fragment")
        }
    }

    /// The `host` header: the port only when it is not the scheme's default.
    package var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (tls ? 443 : 80) ? name : "\(name):\(port)"
    }

    /// A header name made of RFC 9110 token characters and a value without CR, LF, NUL or other
    /// control characters but tab.
    package static func isSafeHeader(name: String, value: String) -> Bool {
        let tokenPunctuation = Set("!#$%&'*+-.^_`|~".utf8)
        guard !name.isEmpty,
            name.utf8.allSatisfy({ byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || tokenPunctuation.contains(byte)
            })
        else { return false }
        return value.utf8.allSatisfy { $0 == UInt8(ascii: "\t") || ($0 >= 0x20 && $0 != 0x7f) }
    }

    /// `url` for an error message: user info (`https://user:password@host`, which the host may not
    /// carry, but a misconfiguration can) is replaced, so a password never reaches a log or a terminal.
    package static func shown(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let authority = url[scheme.upperBound...].prefix { $0 != "/" }
        guard let at = authority.lastIndex(of: "@") else { return url }
        return String(url[..<scheme.upperBound]) + "<redacted>" + String(url[at...])
    }
}
