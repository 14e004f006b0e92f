import Foundation
import PostgresClient
import SMSJobStore
import Testing

/// `sql/schema/` is today's schema written out one file per object; `sql/migrations/` is how databases
/// got there. A database built from each must hold the same objects, definitions and grants, or the
/// files the next person reads would lie.
@Suite("Today's schema files")
struct CurrentSchemaTests {
    @Test(
        "a database built from sql/schema/ equals one built by the migrations (columns, constraints, indexes, triggers, functions, views, grants)"
    )
    func currentFilesEqualTheMigrations() async throws {
        let migrated = try await TestDatabase.create()
        defer { Task { await migrated.drop() } }
        let fromFiles = try await TestDatabase.create(migrated: false)
        defer { Task { await fromFiles.drop() } }
        try await fromFiles.execute(try Self.script(TestEnvironment.schemaDirectory + "/schema.sql"))

        let expected = try await Self.catalog(migrated)
        let actual = try await Self.catalog(fromFiles)
        #expect(expected.count > 200, "the comparison reads the catalog (\(expected.count) entries)")
        for (key, definition) in expected where actual[key] != definition {
            Issue.record(
                """
                \(key) differs: the migrations give
                \(definition)
                sql/schema/ gives
                \(actual[key] ?? "nothing")
                """)
        }
        for key in actual.keys where expected[key] == nil {
            Issue.record("\(key) is in sql/schema/ but no migration makes it")
        }
        // Every function and table has its own file, named after it.
        for key in expected.keys where key.hasPrefix("function ") || key.hasPrefix("relation r ") || key.hasPrefix("relation v ")
        {
            let name = String(key.split(separator: " ").last!)
            let folder = key.hasPrefix("function ") ? "functions" : key.hasPrefix("relation v ") ? "views" : "tables"
            #expect(
                FileManager.default.fileExists(atPath: "\(TestEnvironment.schemaDirectory)/\(folder)/\(name).sql"),
                "\(key) has no file sql/schema/\(folder)/\(name).sql")
        }
    }

    @Test("the comparison sees a difference: a function body changed in one database is reported")
    func theComparisonFailsOnADifference() async throws {
        let one = try await TestDatabase.create()
        defer { Task { await one.drop() } }
        let other = try await TestDatabase.create()
        defer { Task { await other.drop() } }
        try await other.execute(
            """
            CREATE OR REPLACE FUNCTION sms.phone_country(p_phone_key text) RETURNS text
                LANGUAGE sql IMMUTABLE PARALLEL SAFE
                AS $$ SELECT split_part(p_phone_key, ' ', 2) $$;
            GRANT SELECT ON sms.jobs TO PUBLIC;
            """)
        let a = try await Self.catalog(one)
        let b = try await Self.catalog(other)
        #expect(a["function phone_country"] != b["function phone_country"])
        #expect(a["relation r jobs"] != b["relation r jobs"], "a grant changes the table's entry")
        #expect(a.filter { b[$0.key] != $0.value }.count == 2)
    }

    /// `schema.sql` with its `\ir` lines replaced by the files they name, as psql would read them.
    static func script(_ path: String) throws -> String {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try String(contentsOfFile: path, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in
                guard line.hasPrefix("\\ir ") else { return String(line) }
                return try script(directory + "/" + line.dropFirst(4).trimmingCharacters(in: .whitespaces))
            }
            .joined(separator: "\n")
    }

    /// Every object of schema `sms` as PostgreSQL itself prints it, keyed by kind and name.
    static func catalog(_ database: TestDatabase) async throws -> [String: String] {
        let rows = try await database.query(
            """
            WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = 'sms')
            SELECT 'schema sms' AS key, coalesce(n.nspacl::text, '') AS definition FROM pg_namespace n WHERE n.nspname = 'sms'
            UNION ALL
            SELECT format('relation %s %s', c.relkind, c.relname),
                   concat_ws(' | ', c.relpersistence, c.reloptions::text, c.relacl::text, obj_description(c.oid, 'pg_class'),
                             CASE c.relkind WHEN 'v' THEN pg_get_viewdef(c.oid) END)
            FROM pg_class c, s WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
            UNION ALL
            SELECT format('column %s.%s', c.relname, a.attname),
                   concat_ws(' | ', row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), format_type(a.atttypid, a.atttypmod),
                             a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attacl::text,
                             col_description(c.oid, a.attnum))
            FROM pg_class c JOIN s ON c.relnamespace = s.oid
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'v', 'p')
            UNION ALL
            SELECT format('constraint %s.%s', c.relname, k.conname), concat_ws(' | ', pg_get_constraintdef(k.oid), k.convalidated)
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN s ON c.relnamespace = s.oid
            UNION ALL
            SELECT format('index %s', i.relname), pg_get_indexdef(i.oid)
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN s ON i.relnamespace = s.oid
            UNION ALL
            SELECT format('trigger %s.%s', c.relname, t.tgname), pg_get_triggerdef(t.oid)
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN s ON c.relnamespace = s.oid WHERE NOT t.tgisinternal
            UNION ALL
            SELECT format('function %s', p.proname),
                   concat_ws(' | ', pg_get_functiondef(p.oid), p.proacl::text, obj_description(p.oid, 'pg_proc'))
            FROM pg_proc p, s WHERE p.pronamespace = s.oid
            UNION ALL
            SELECT format('sequence %s', q.sequencename),
                   concat_ws(' | ', q.data_type, q.start_value, q.increment_by, q.cache_size, q.cycle)
            FROM pg_sequences q WHERE q.schemaname = 'sms'
            UNION ALL
            SELECT format('type %s', t.typname), t.typtype::text
            FROM pg_type t, s WHERE t.typnamespace = s.oid AND t.typrelid = 0 AND t.typelem = 0
            UNION ALL
            SELECT 'rows sms.rate_schedule', (SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]')::text FROM sms.rate_schedule r)
            UNION ALL
            SELECT 'rows sms.fraud_state', (SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]')::text FROM sms.fraud_state r)
            """)
        var catalog: [String: String] = [:]
        for row in rows.rows {
            let key = try row.requiredString("key")
            #expect(catalog[key] == nil, "\(key) appears twice (an overloaded function?)")
            catalog[key] = try row.requiredString("definition")
        }
        return catalog
    }
}
