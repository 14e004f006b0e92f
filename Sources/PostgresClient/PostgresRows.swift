/// The rows of one result, copied out of the `PGresult` (which is cleared before this exists), as text.
package struct PostgresRows: Sendable {
    package let columns: [String]
    package let rows: [PostgresRow]
    /// `PQcmdTuples`: rows affected by an INSERT/UPDATE/DELETE.
    package let affectedRows: Int

    package var count: Int { rows.count }
    package var first: PostgresRow? { rows.first }

    init(columns: [String], rows: [PostgresRow], affectedRows: Int) {
        self.columns = columns
        self.rows = rows
        self.affectedRows = affectedRows
    }

    /// Rows made by hand, in the server's text format: a statement's decoding tested without a server.
    package init(columns: [String], values: [[String?]], affectedRows: Int = 0) {
        let index = Dictionary(columns.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        self.init(
            columns: columns, rows: values.map { PostgresRow(columnIndex: index, values: $0) },
            affectedRows: affectedRows)
    }
}

package struct PostgresRow: Sendable {
    let columnIndex: [String: Int]
    package let values: [String?]

    package func isNull(_ column: String) throws -> Bool { try raw(column) == nil }

    package func raw(_ column: String) throws -> String? {
        guard let index = columnIndex[column] else {
            throw PostgresError(code: .badValue, message: "no column \"\(column)\" in result")
        }
        return values[index]
    }

    package func string(_ column: String) throws -> String? { try raw(column) }

    package func requiredString(_ column: String) throws -> String { try required(column, string) }

    package func int(_ column: String) throws -> Int? { try parsed(column, as: "an integer", Int.init) }

    package func requiredInt(_ column: String) throws -> Int { try required(column, int) }

    package func double(_ column: String) throws -> Double? { try parsed(column, as: "a number", Double.init) }

    package func requiredDouble(_ column: String) throws -> Double { try required(column, double) }

    /// The column's text read by `parse`; nil for NULL, an error naming the column for anything else.
    private func parsed<T>(_ column: String, as what: String, _ parse: (String) -> T?) throws -> T? {
        guard let text = try raw(column) else { return nil }
        guard let value = parse(text) else {
            throw PostgresError(code: .badValue, message: "column \"\(column)\" is not \(what): \(text)")
        }
        return value
    }

    private func required<T>(_ column: String, _ read: (String) throws -> T?) throws -> T {
        guard let value = try read(column) else {
            throw PostgresError(code: .badValue, message: "column \"\(column)\" is NULL")
        }
        return value
    }

    package func bool(_ column: String) throws -> Bool? {
        try parsed(column, as: "a boolean") { $0 == "t" ? true : $0 == "f" ? false : nil }
    }
}
