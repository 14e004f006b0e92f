/// Encodes Swift values as PostgreSQL array literals (`{1,2,NULL}`), so a whole batch travels as one text
/// parameter and the server expands it with `unnest`: one round trip per batch, not per job.
package enum PostgresArray {
    package static func literal(_ values: [Int?]) -> String { numbers(values) }

    package static func literal(_ values: [Int]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    package static func literal(_ values: [Double?]) -> String { numbers(values) }

    /// Numbers need no quoting: their text as Swift writes it, which PostgreSQL reads back exactly.
    private static func numbers<Number: LosslessStringConvertible>(_ values: [Number?]) -> String {
        var out = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { out += "," }
            if let value { out += value.description } else { out += "NULL" }
        }
        return out + "}"
    }

    /// Every element is double-quoted with `"` and `\` escaped, so commas, braces, quotes, spaces and
    /// the word NULL inside a message survive; a nil element is the bare NULL.
    package static func literal(_ values: [String?]) -> String {
        var out = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { out += "," }
            guard let value else {
                out += "NULL"
                continue
            }
            out += "\""
            // Most values (ids, numbers, plain messages) need no escaping: append them whole.
            if !value.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0 }) {
                out += value
                out += "\""
                continue
            }
            for scalar in value.unicodeScalars {
                if scalar == "\"" || scalar == "\\" { out += "\\" }
                if scalar == "\0" { continue }  // PostgreSQL text cannot hold NUL
                out.unicodeScalars.append(scalar)
            }
            out += "\""
        }
        return out + "}"
    }
}
