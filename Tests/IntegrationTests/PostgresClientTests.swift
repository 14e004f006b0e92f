import Foundation
import PostgresClient
import Testing
import SMSTestSupport

@Suite("libpq wrapper against a real PostgreSQL")
struct PostgresClientTests {
    @Test func badConninfoIsAConnectionError() async throws {
        await #expect(throws: PostgresError.self) { try await PostgresConnection.connect("this is = not a conninfo") }
        do {
            _ = try await PostgresConnection.connect("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
            Issue.record("connecting to port 1 succeeded")
        } catch let error as PostgresError {
            #expect(error.code == .connectionFailed)
            #expect(error.isConnectionProblem)
            #expect(error.message.contains("127.0.0.1") || error.message.lowercased().contains("connect"))
        }
    }

    @Test("a malformed or refused database URL never echoes its password")
    func secretsStayOutOfErrors() async throws {
        for url in [
            "postgresql://u:s3cr%zzet@127.0.0.1:1/db", "postgresql://u:s3cret@127.0.0.1:99999999/db",
            "host=127.0.0.1 password='s3cret' port=notaport", "host=127.0.0.1 port=1 password=s3cret connect_timeout=2",
            "postgresql://u:s3cret@127.0.0.1:1/db?connect_timeout=2&sslmode=bogus",
        ] {
            do {
                _ = try await PostgresConnection.connect(url)
                Issue.record("\(url) connected")
            } catch {
                #expect(!"\(error)".contains("s3cr"), "\(error)")
                #expect("\(error)".count > 20, "still says what is wrong: \(error)")
            }
        }
        #expect(ConnInfo.redacted("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db")
    }

    @Test("errors are classified once: connection, transient (keep and retry), data (one row's values)")
    func dispositions() {
        func error(_ state: String) -> PostgresError { PostgresError(code: .queryFailed, sqlState: state, message: "m") }
        for state in ["25006", "53100", "57014", "40001", "40P01", "55P03", "42P01", "XX000"] {
            #expect(error(state).disposition == .transient, "\(state)")
        }
        for state in ["22003", "22001", "22021", "23505", "23514"] { #expect(error(state).disposition == .data, "\(state)") }
        for state in ["08006", "57P01"] { #expect(error(state).disposition == .connection, "\(state)") }
        #expect(PostgresError(code: .connectionLost, message: "gone").disposition == .connection)
    }

    @Test("commit() says so when COMMIT rolled back a failed transaction (its tag reads ROLLBACK, no error)")
    func commitOfAFailedTransactionThrows() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await PostgresConnection.connect(database.url)
        try await db.execute("CREATE TABLE t (a int PRIMARY KEY)")
        try await db.execute("BEGIN")
        try await db.execute("INSERT INTO t VALUES (1)")
        try await db.commit()
        try await db.execute("BEGIN")
        try await db.execute("INSERT INTO t VALUES (2)")
        await #expect(throws: PostgresError.self) { try await db.execute("INSERT INTO t VALUES (1)") }
        do {
            try await db.commit()
            Issue.record("the commit of a failed transaction did not throw")
        } catch let error as PostgresError {
            #expect(error.sqlState == "25P02")
        }
        #expect(try await db.query("SELECT count(*)::int AS n FROM t").first?.int("n") == 1)
        await db.close()
    }

    @Test("a pipeline runs its queries in one round trip, in order, prepared or not, and stops at the first failure")
    func pipelineRunsInOrderAndStopsAtAFailure() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await PostgresConnection.connect(database.url)
        let other = try await PostgresConnection.connect(database.url)
        try await db.execute("CREATE TABLE t (a int PRIMARY KEY)")
        // BEGIN + a prepared insert, then the same insert and COMMIT: one transaction, committed.
        let insert = "INSERT INTO t VALUES ($1::int) RETURNING a, pg_current_xact_id()::text AS x"
        let first = try await db.pipeline([.init("BEGIN"), .init(insert, ["1"], prepared: true)])
        #expect(first.count == 2)
        #expect(try first[1].first?.int("a") == 1)
        #expect(try await other.query("SELECT count(*)::int AS n FROM t").first?.int("n") == 0, "still open")
        let second = try await db.pipeline([.init(insert, ["2"], prepared: true), .init("COMMIT")])
        let firstTransaction = try first[1].first?.string("x")
        #expect(try second[0].first?.string("x") == firstTransaction, "the same transaction")
        #expect(try await other.query("SELECT count(*)::int AS n FROM t").first?.int("n") == 2)

        // A failing first query: the COMMIT after it is skipped, the transaction never commits.
        _ = try await db.pipeline([.init("BEGIN"), .init(insert, ["3"], prepared: true)])
        do {
            _ = try await db.pipeline([.init(insert, ["1"], prepared: true), .init("COMMIT")])
            Issue.record("a duplicate key did not fail the pipeline")
        } catch let error as PostgresError {
            #expect(error.sqlState == "23505" && error.pipelineStep == 0)
        }
        // The transaction is failed; its COMMIT (alone, in a pipeline) answers ROLLBACK and says so.
        do {
            _ = try await db.pipeline([.init("COMMIT")])
            Issue.record("the commit of a failed transaction did not throw")
        } catch let error as PostgresError {
            #expect(error.sqlState == "25P02" && error.pipelineStep == 0)
        }
        #expect(try await other.query("SELECT array_agg(a ORDER BY a)::text AS a FROM t").first?.string("a") == "{1,2}")
        // The connection is usable after both failures, outside pipeline mode.
        #expect(try await db.query("SELECT 1 AS one").first?.int("one") == 1)
        await db.close()
        await other.close()
    }

    @Test(
        "withSession: several pipelines and the work between them in one trip to the connection's thread; a failure comes out as thrown"
    )
    func sessionRunsPipelinesBackToBack() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await PostgresConnection.connect(database.url)
        try await db.execute("CREATE TABLE t (a int PRIMARY KEY)")
        // The second pipeline uses what the first answered, in the first one's transaction.
        let inserted = try await db.withSession { session -> Int in
            let first = try session.pipeline([.init("BEGIN"), .init("INSERT INTO t VALUES (1) RETURNING a + 1 AS next")])
            let next = try first[1].first?.int("next") ?? 0
            _ = try session.pipeline([.init("INSERT INTO t VALUES ($1::int)", [String(next)], prepared: true), .init("COMMIT")])
            return next
        }
        #expect(inserted == 2)
        #expect(try await db.query("SELECT array_agg(a ORDER BY a)::text AS a FROM t").first?.string("a") == "{1,2}")
        // A failed COMMIT inside the session throws out of it, with its step.
        do {
            try await db.withSession { session in
                _ = try session.pipeline([.init("BEGIN"), .init("INSERT INTO t VALUES (1)")])
            }
            Issue.record("a duplicate key did not fail the session")
        } catch let error as PostgresError {
            #expect(error.sqlState == "23505" && error.pipelineStep == 1)
        }
        do {
            try await db.withSession { try $0.commit() }
            Issue.record("the commit of a failed transaction did not throw")
        } catch let error as PostgresError {
            // A COMMIT alone is no pipeline step: step 0 would say a statement before it failed (a
            // certain rollback), where a COMMIT's own error other than ROLLBACK may have committed.
            #expect(error.sqlState == "25P02" && error.pipelineStep == nil)
        }
        #expect(try await db.query("SELECT count(*)::int AS n FROM t").first?.int("n") == 2)
        await db.close()
    }

    @Test("session limits: a statement past its timeout is cancelled (57014, transient); keepalives are on")
    func sessionLimits() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await PostgresConnection.connect(
            database.url,
            session: SessionSettings(
                statementTimeout: .milliseconds(200), lockTimeout: .milliseconds(150), jit: false, plans: .keyLookups,
                pinnedSearchPath: true))
        do {
            try await db.query("SELECT pg_sleep(2)")
            Issue.record("pg_sleep(2) outlived a 200 ms statement timeout")
        } catch let error as PostgresError {
            #expect(error.sqlState == "57014")
            #expect(error.disposition == .transient)
        }
        #expect(try await db.query("SHOW lock_timeout").first?.string("lock_timeout") == "150ms")
        #expect(try await db.query("SHOW statement_timeout").first?.string("statement_timeout") == "200ms")
        #expect(try await db.query("SHOW jit").first?.string("jit") == "off")
        #expect(try await db.query("SHOW plan_cache_mode").first?.string("plan_cache_mode") == "force_generic_plan")
        #expect(try await db.query("SHOW enable_seqscan").first?.string("enable_seqscan") == "off")
        // Issue 26: names in the daemon's statements never resolve to another role's objects in `public`.
        #expect(try await db.query("SHOW search_path").first?.string("search_path") == "pg_catalog, pg_temp")
        #expect(
            try await db.query("SHOW idle_in_transaction_session_timeout").first?
                .string("idle_in_transaction_session_timeout") == "0")
        // Client-side socket options: `SHOW tcp_user_timeout` is the server's own socket, so ask libpq.
        // Half of systemd's WatchdogSec (30 s): a dead peer fails the call well before the watchdog fires.
        #expect(try await db.connectionOption("tcp_user_timeout") == "15000")
        #expect(try await db.connectionOption("keepalives") == "1")
        #expect(try await db.connectionOption("keepalives_idle") == "5")
        #expect(try await db.connectionOption("password") == nil)
        await db.close()

        // The caller's conninfo wins over these defaults; an idle-in-transaction limit is set too.
        let own = try await PostgresConnection.connect(
            database.url + (database.url.contains("?") ? "&" : "?") + "tcp_user_timeout=5000",
            session: SessionSettings(idleInTransactionTimeout: .seconds(5)))
        #expect(try await own.connectionOption("tcp_user_timeout") == "5000")
        #expect(
            try await own.query("SHOW idle_in_transaction_session_timeout").first?
                .string("idle_in_transaction_session_timeout") == "5s")
        await own.close()
    }

    @Test("the password is found where libpq finds it, and only it is blanked for logs")
    func redaction() {
        let cases: [(String, String)] = [
            ("postgresql://u:s3cret@h/db", "postgresql://u:***@h/db"),
            ("postgres://u:s3c?ret@h:5432/db?sslmode=require", "postgres://u:***@h:5432/db?sslmode=require"),
            ("postgresql://postgres:postgres@h/postgres", "postgresql://postgres:***@h/postgres"),
            ("postgresql://u@h/db?sslmode=require&password=s3cret", "postgresql://u@h/db?sslmode=require&password=***"),
            ("postgresql://u:s3c@ret@h/db", "postgresql://u:***@***h/db"),
            ("host=h password='it\\'s s3cret' port=5432", "host=h password='***' port=5432"),
            ("host=h password = s3cret dbname=d", "host=h password = *** dbname=d"),
            ("host=h sslpassword=s3cret", "host=h sslpassword=***"),
            ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
            ("host=h user=password dbname=d", "host=h user=password dbname=d"),
        ]
        for (conninfo, expected) in cases { #expect(ConnInfo.redacted(conninfo) == expected, "\(conninfo)") }
        // libpq quotes what it took for the host, which holds the password's tail after a raw '@'.
        let host = ConnInfo.redact(
            "could not translate host name \"ret@h\" to address",
            conninfo: "postgresql://u:s3c@ret@h/db")
        #expect(!host.contains("ret@") && host.contains("\"***h\""), "\(host)")
        // Raw, percent-decoded and unescaped forms are all blanked; quoted fragments on request.
        #expect(ConnInfo.redact("p%40ss or p@ss", conninfo: "postgresql://u:p%40ss@h/db") == "*** or ***")
        #expect(ConnInfo.redact("it's s3cret", conninfo: "host=h password='it\\'s s3cret'") == "***")
        #expect(
            ConnInfo.redact("invalid token: \"abc\" here", conninfo: "host=h", quoted: true)
                == "invalid token: \"…\" here")
    }

    @Test func sqlErrorsCarrySQLStateAndTheConnectionSurvives() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await database.connect()
        do {
            try await db.query("SELEC 1")
            Issue.record("syntax error not raised")
        } catch let error as PostgresError {
            #expect(error.code == .queryFailed)
            #expect(error.sqlState == "42601")
            #expect(!error.isConnectionProblem)
        }
        do {
            try await db.query("SELECT * FROM no_such_table")
            Issue.record("missing table not raised")
        } catch let error as PostgresError {
            #expect(error.sqlState == "42P01")
            #expect(error.message.contains("no_such_table"))
        }
        try await db.execute("CREATE TABLE t (id int PRIMARY KEY)")
        try await db.query("INSERT INTO t VALUES ($1)", ["1"])
        do {
            try await db.query("INSERT INTO t VALUES ($1)", ["1"])
            Issue.record("duplicate not raised")
        } catch let error as PostgresError {
            #expect(error.sqlState == "23505")
            #expect(error.detail?.contains("(id)=(1)") == true)
        }
        // Still usable after errors, with and without prepared statements.
        #expect(try await db.query("SELECT count(*)::int AS n FROM t", prepared: true).first?.requiredInt("n") == 1)
        #expect(try await db.query("SELECT count(*)::int AS n FROM t", prepared: true).first?.requiredInt("n") == 1)
        await db.close()
        do {
            try await db.query("SELECT 1")
            Issue.record("query on a closed connection succeeded")
        } catch let error as PostgresError {
            #expect(error.code == .closed)
        }
    }

    @Test func nullsAndTypedValues() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await database.connect()
        let row = try #require(
            try await db.query(
                "SELECT $1::text AS a, $2::text AS b, $3::int AS n, 2.5::float8 AS d, true AS t, false AS f, NULL::int AS z",
                [nil, "x'y\"z", "42"]
            ).first)
        #expect(try row.string("a") == nil)
        #expect(try row.isNull("a"))
        #expect(try row.string("b") == "x'y\"z")
        #expect(try row.int("n") == 42)
        #expect(try row.double("d") == 2.5)
        #expect(try row.bool("t") == true)
        #expect(try row.bool("f") == false)
        #expect(try row.int("z") == nil)
        #expect(throws: PostgresError.self) { try row.requiredInt("z") }
        #expect(throws: PostgresError.self) { try row.int("b") }
        #expect(throws: PostgresError.self) { try row.raw("missing") }
        let affected = try await db.query("SELECT generate_series(1, 3) AS n")
        #expect(affected.count == 3)
        await db.close()
    }

    @Test func arrayLiteralsSurviveARoundTrip() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let db = try await database.connect()
        let strings: [String?] = [
            "plain", nil, "NULL", "with,comma", "{braces}", "quote\"s", "back\\slash", "", " spaced ", "中文 ✓", "new\nline",
        ]
        let rows = try await db.query(
            "SELECT u AS v FROM unnest($1::text[]) WITH ORDINALITY AS x(u, i) ORDER BY i",
            [PostgresArray.literal(strings)])
        #expect(try rows.rows.map { try $0.string("v") } == strings)
        let ints: [Int?] = [1, nil, -3, Int(Int32.max)]
        let intRows = try await db.query(
            "SELECT u AS v FROM unnest($1::bigint[]) WITH ORDINALITY AS x(u, i) ORDER BY i",
            [PostgresArray.literal(ints)])
        #expect(try intRows.rows.map { try $0.int("v") } == ints)
        await db.close()
    }

    @Test func listenReceivesNotifications() async throws {
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let listener = try await database.connect()
        try await listener.listen("wake_up")
        let quiet = try await listener.waitForNotifications(timeout: .milliseconds(200))
        #expect(quiet.isEmpty)
        try await database.query("SELECT pg_notify('wake_up', 'hello')")
        var received: [PostgresNotification] = []
        _ = await eventually(timeout: .seconds(5)) {
            received += (try? await listener.waitForNotifications(timeout: .milliseconds(200))) ?? []
            return !received.isEmpty
        }
        #expect(received.first?.channel == "wake_up")
        #expect(received.first?.payload == "hello")
        await listener.close()
    }
}
