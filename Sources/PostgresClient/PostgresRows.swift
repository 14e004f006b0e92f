/// The rows of one result, copied out of the `PGresult` (which is cleared before this exists), as text.
public struct PostgresRows: Sendable {
    public let columns: [String]
    public let rows: [PostgresRow]
    /// `PQcmdTuples`: rows affected by an INSERT/UPDATE/DELETE.
    public let affectedRows: Int

    public var count: Int { rows.count }
    public var first: PostgresRow? { rows.first }
}

public struct PostgresRow: Sendable {
    let columnIndex: [String: Int]
    public let values: [String?]

    public func isNull(_ column: String) throws -> Bool { try raw(column) == nil }

    public func raw(_ column: String) throws -> String? {
        guard let index = columnIndex[column] else {
            throw PostgresError(code: .badValue, message: "no column \"\(column)\" in result")
        }
        return values[index]
    }

    public func string(_ column: String) throws -> String? { try raw(column) }

    public func requiredString(_ column: String) throws -> String {
        guard let value = try raw(column) else {
            throw PostgresError(code: .badValue, message: "column \"\(column)\" is NULL")
        }
        return value
    }

    public func int(_ column: String) throws -> Int? {
        guard let text = try raw(column) else { return nil }
        guard let value = Int(text) else {
            throw PostgresError(code: .badValue, message: "column \"\(column)\" is not an integer: \(text)")
        }
        return value
    }

    public func requiredInt(_ column: String) throws -> Int {
        guard let value = try int(column) else {
            throw PostgresError(code: .badValue, message: "column \"\(column)\" is NULL")
        }
        return value
    }

    public func double(_ column: String) throws -> Double? {
        guard let text = try raw(column) else { return nil }
        guard let value = Double(text) else {
            throw PostgresError(code: .badValue, message: "column \"\(column)\" is not a number: \(text)")
        }
        return value
    }

    public func bool(_ column: String) throws -> Bool? {
        guard let text = try raw(column) else { return nil }
        switch text {
        case "t": return true
        case "f": return false
        default: throw PostgresError(code: .badValue, message: "column \"\(column)\" is not a boolean: \(text)")
        }
    }
}
