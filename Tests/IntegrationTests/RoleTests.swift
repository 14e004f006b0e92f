import Foundation
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// Issue 13: the four group roles `migrate` creates, each used through a LOGIN role of the test's own
/// (roles belong to the cluster, which concurrent tests share: names are unique, dropped at the end).
/// Each can do what the contract says and is refused the rest with SQLSTATE 42501.
@Suite("Roles")
struct RoleTests {
    let binary = TestEnvironment.executable("sms-dispatcher")

    // MARK: producer

    @Test func producerEnqueuesFollowsItsJobsAndSetsNothingElse() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let producer = try await LoginRole.create(member: "sms_producer", in: database)
        defer { Task { await producer.drop() } }
        // Readable by the insert trigger only: the trigger must run as the owner for this to apply.
        try await database.query("INSERT INTO sms.channel_settings (channel, default_priority) VALUES ('CHANNEL_VERIFY_MFA', 10)")
        let db = try await producer.connect()

        let plain = try await db.query(
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13800138000') RETURNING id"
        )
        .single().requiredInt("id")
        let full = try await db.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code, priority, run_at, expires_at, max_attempts,
                                  idempotency_key, metadata, client_ip, user_ref)
            VALUES ('CHANNEL_VERIFY_MFA', '5551234567', '+1', 0, now(), now() + interval '10 minutes', 3,
                    'order-1', '{"order": 1}', '203.0.113.9', 'user-7')
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
            """
        ).single().requiredInt("id")
        let enqueue = """
            SELECT sms.enqueue('CHANNEL_REGISTER', '13800138001', idempotency_key => 'signup-1',
                               client_ip => '198.51.100.1', user_ref => 'u1') AS id
            """
        let enqueued = try await db.query(enqueue).single().requiredInt("id")
        #expect(try await db.query(enqueue).single().requiredInt("id") == enqueued, "a repeated key returns the first id")

        // The CLI's enqueue, as this role.
        let config = try ConfigFile(url: producer.url)
        defer { config.remove() }
        let cli = try await ChildProcess.run(
            binary,
            [
                "enqueue", "--config", config.path, "--channel", "CHANNEL_LOGIN",
                "--phone", "13800138003",
            ])
        #expect(cli.status == 0, "\(cli.output)")

        let stored = try await database.query(
            """
            SELECT id, priority, phone_key, state, attempts, uncertain, locked_until, host(client_ip) AS ip, user_ref
            FROM sms.jobs WHERE id = ANY ($1::bigint[]) ORDER BY id
            """, ["{\(plain),\(full),\(enqueued)}"]
        ).rows
        #expect(stored.count == 3)
        for row in stored {
            #expect(try row.string("state") == "pending" && row.int("attempts") == 0 && row.bool("uncertain") == false)
            #expect(try row.string("locked_until") == nil)
        }
        #expect(try stored[0].string("phone_key") == "+86 13800138000", "the generated column, computed for the producer")
        #expect(try stored[1].int("priority") == 10, "the channel's default priority, read by the trigger")
        #expect(try stored[1].string("phone_key") == "+1 5551234567")
        #expect(try stored[2].string("ip") == "198.51.100.1" && stored[2].string("user_ref") == "u1")

        // Following a job: its state and GenAuth's answer, and the announcements.
        let followed = try await db.query(
            """
            SELECT id, channel, state, attempts, max_attempts, status_code, api_code, message, request_id, http_status,
                   run_at, expires_at, created_at, updated_at, sent_at, finished_at, idempotency_key
            FROM sms.jobs WHERE id = $1
            """, [String(full)]
        ).single()
        #expect(try followed.string("state") == "pending" && followed.int("max_attempts") == 3)
        try await db.listen("sms_job_events")
        try await database.query("SELECT * FROM sms.cancel_jobs($1::bigint[])", ["{\(plain)}"])
        #expect(try await hear("\(plain):cancelled", on: db), "the producer hears its job's terminal state")

        // Daemon-owned columns, whatever the value: a producer must not make a job stuck, pre-sent or
        // "uncertain" (which turns GenAuth's "too frequent" into `sent` without sending).
        let daemonOwned: [(String, String)] = [
            ("state", "'running'"), ("locked_until", "'infinity'"), ("uncertain", "true"), ("attempts", "3"),
            ("locked_by", "'me'"), ("lease_token", "1"), ("sending_at", "now()"), ("deferrals", "1"),
            ("status_code", "200"), ("api_code", "0"), ("message", "'sent'"), ("request_id", "'r'"),
            ("http_status", "200"), ("sent_at", "now()"), ("finished_at", "now()"), ("created_at", "now()"),
            ("updated_at", "now()"), ("id", "424242"),
        ]
        for (column, value) in daemonOwned {
            try await expectRefused(
                db, "INSERT INTO sms.jobs (channel, phone_number, \(column)) VALUES ('CHANNEL_LOGIN', '13800138002', \(value))")
        }
        try await expectRefused(
            db,
            """
            INSERT INTO sms.jobs (channel, phone_number, idempotency_key) VALUES ('CHANNEL_LOGIN', '1', 'order-1')
            ON CONFLICT (idempotency_key) DO UPDATE SET state = 'running'
            """)
        for statement in [
            "UPDATE sms.jobs SET state = 'pending' WHERE id = \(plain)",
            "UPDATE sms.jobs SET priority = 100",
            "DELETE FROM sms.jobs WHERE id = \(full)",
            "TRUNCATE sms.jobs",
            "SELECT * FROM sms.jobs",
            "SELECT phone_number FROM sms.jobs",
            "SELECT phone_country_code FROM sms.jobs",
            "SELECT phone_key FROM sms.jobs",
            "SELECT metadata FROM sms.jobs",
            "SELECT client_ip FROM sms.jobs",
            "SELECT user_ref FROM sms.jobs",
            "SELECT locked_by, lease_token FROM sms.jobs",
            "SELECT count(*) FROM sms.attempts",
            "SELECT count(*) FROM sms.controls",
            "SELECT count(*) FROM sms.throttle",
            "INSERT INTO sms.channel_settings (channel, default_priority) VALUES ('CHANNEL_LOGIN', 100)",
            "SELECT sms.pause()",
            "SELECT sms.resume()",
            "SELECT * FROM sms.cancel_jobs('{\(full)}')",
            "SELECT * FROM sms.requeue_jobs('{cancelled}', NULL, '{}', NULL, 10, false)",
            "SELECT sms.purge_finished(0, 100)",
            "SELECT * FROM sms.claim_jobs('thief', 10, 3600)",
        ] {
            try await expectRefused(db, statement)
        }
        await db.close()

        let after = try await stateCounts(database)
        #expect(after == ["pending": 3, "cancelled": 1], "the refused statements changed nothing: \(after)")
    }

    // MARK: monitor

    @Test func monitorReadsTheQueueAndChangesNothing() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let monitor = try await LoginRole.create(member: "sms_monitor", in: database)
        defer { Task { await monitor.drop() } }
        try await database.execute(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, sent_at, finished_at) VALUES
                ('CHANNEL_LOGIN', '13800000001', 'sent', 1, now(), now());
            INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_REGISTER', '13800000002');
            INSERT INTO sms.attempts (job_id, attempt, worker, started_at, finished_at, outcome)
                SELECT id, 1, 'w', now(), now(), 'sent' FROM sms.jobs WHERE state = 'sent';
            INSERT INTO sms.workers (id, host, pid, version) VALUES ('w', 'h', 1, 'test');
            SELECT sms.pause('CHANNEL_BIND_MFA', 'maintenance', NULL);
            """)
        let db = try await monitor.connect()
        for relation in ["sms.queue_stats", "sms.workers", "sms.jobs", "sms.attempts", "sms.controls"] {
            #expect(try await db.query("SELECT count(*)::int AS n FROM \(relation)").single().requiredInt("n") > 0, "\(relation)")
        }
        #expect(
            try await db.query("SELECT phone_number FROM sms.jobs ORDER BY id").first?.string("phone_number") == "13800000001")

        for statement in [
            "UPDATE sms.jobs SET state = 'cancelled'",
            "DELETE FROM sms.jobs",
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '1')",
            "DELETE FROM sms.workers",
            "DELETE FROM sms.controls",
            "INSERT INTO sms.controls (channel, paused_by) VALUES ('*', 'me')",
            "SELECT count(*) FROM sms.throttle",
            "SELECT sms.pause()",
            "SELECT sms.resume()",
            "SELECT sms.enqueue('CHANNEL_LOGIN', '1')",
            "SELECT * FROM sms.cancel_jobs('{1}')",
            "SELECT * FROM sms.requeue_jobs('{failed}', NULL, '{}', NULL, 10, false)",
            "SELECT sms.purge_finished(0, 100)",
        ] {
            try await expectRefused(db, statement)
        }
        await db.close()

        let config = try ConfigFile(url: monitor.url)
        defer { config.remove() }
        let status = try await ChildProcess.run(binary, ["status", "--json", "--config", config.path])
        #expect(status.status == 0, "\(status.output)")
        let report = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any]
        #expect((report?["totals"] as? [String: Int])?["sent"] == 1, "\(status.output)")
        #expect((report?["workers"] as? [Any])?.count == 1)
        let table = try await ChildProcess.run(binary, ["status", "--config", config.path])
        #expect(table.status == 0 && table.output.contains("CHANNEL_BIND_MFA"), "the pause shows: \(table.output)")

        let cancel = try await ChildProcess.run(binary, ["cancel", "--config", config.path, "1"])
        #expect(cancel.status == 1 && cancel.output.contains("permission denied"), "\(cancel.output)")
        let pause = try await ChildProcess.run(binary, ["pause", "--config", config.path])
        #expect(pause.status != 0 && pause.output.contains("permission denied"), "\(pause.output)")
        #expect(try await stateCounts(database) == ["sent": 1, "pending": 1])
        #expect(try await database.query("SELECT channel FROM sms.controls").rows.count == 1)
    }

    // MARK: operator

    @Test func operatorRequeuesCancelsPurgesPausesAndResumesThroughTheCommands() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let operatorRole = try await LoginRole.create(member: "sms_operator", in: database)
        defer { Task { await operatorRole.drop() } }
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, message, finished_at, metadata) VALUES
            ('CHANNEL_LOGIN', '13800000001', 'failed', 5, 'attempts exhausted', now() - interval '1 hour', '{"n": 1}'),
            ('CHANNEL_LOGIN', '13800000002', 'pending', 0, NULL, NULL, '{"n": 2}'),
            ('CHANNEL_LOGIN', '13800000003', 'sent', 1, '', now() - interval '8 days', '{"n": 3}'),
            ('CHANNEL_LOGIN', '13800000004', 'running', 0, NULL, NULL, '{"n": 4}')
            """)
        func id(_ n: Int) async throws -> Int {
            try await database.query("SELECT id FROM sms.jobs WHERE metadata->>'n' = $1", [String(n)]).single().requiredInt("id")
        }
        let failed = try await id(1)
        let pending = try await id(2)
        let running = try await id(4)
        let config = try ConfigFile(url: operatorRole.url)
        defer { config.remove() }
        func cli(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await ChildProcess.run(binary, [arguments[0], "--config", config.path] + arguments.dropFirst())
        }

        let requeued = try await cli(["requeue", "--state", "failed"])
        #expect(requeued.status == 0 && requeued.output.contains("requeued 1 job(s): \(failed)"), "\(requeued.output)")
        let row = try await database.query("SELECT state, attempts FROM sms.jobs WHERE id = $1", [String(failed)]).single()
        #expect(try row.string("state") == "pending" && row.int("attempts") == 0)

        let cancelled = try await cli(["cancel", String(pending), String(running)])
        #expect(cancelled.status == 1, "the running job is not cancelled: \(cancelled.output)")
        #expect(cancelled.output.contains("\(pending): cancelled"), "\(cancelled.output)")
        #expect(cancelled.output.contains("\(running): not cancelled: being sent right now"), "\(cancelled.output)")

        let purged = try await cli(["purge", "--older-than", "7d"])
        #expect(purged.status == 0 && purged.output.contains("deleted 1 finished job(s)"), "\(purged.output)")

        let paused = try await cli(["pause", "--channel", "CHANNEL_LOGIN", "--reason", "maintenance", "--for", "1h"])
        #expect(paused.status == 0, "\(paused.output)")
        let control = try await database.query("SELECT channel, paused_by, reason FROM sms.controls").single()
        #expect(try control.string("channel") == "CHANNEL_LOGIN" && control.string("reason") == "maintenance")
        #expect(try control.string("paused_by") == operatorRole.name, "who paused: the operator's own login role")
        let status = try await cli(["status"])
        #expect(status.status == 0 && status.output.contains(operatorRole.name), "\(status.output)")
        let resumed = try await cli(["resume", "--channel", "CHANNEL_LOGIN"])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(try await database.query("SELECT channel FROM sms.controls").rows.isEmpty)

        // Only through those functions: no direct writes, no requeue of a job that is being (or was) sent.
        let db = try await operatorRole.connect()
        for statement in [
            "UPDATE sms.jobs SET state = 'pending' WHERE id = \(running)",
            "DELETE FROM sms.jobs WHERE id = \(pending)",
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '1')",
            "INSERT INTO sms.controls (channel, paused_by) VALUES ('*', 'someone else')",
            "SELECT sms.enqueue('CHANNEL_LOGIN', '1')",
            "CREATE TABLE sms.mine (id int)",
        ] {
            try await expectRefused(db, statement)
        }
        for state in ["running", "sent", "pending"] {
            try await expectRefused(
                db, "SELECT * FROM sms.requeue_jobs('{\(state)}', NULL, '{}', NULL, 10, false)",
                sqlState: "22023")
        }
        await db.close()
        #expect(
            try await database.query("SELECT state FROM sms.jobs WHERE id = $1", [String(running)]).single()
                .string("state") == "running")
    }

    // MARK: dispatcher

    @Test func theDaemonRunsAsSmsDispatcherAloneAndCannotChangeTheSchema() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let dispatcher = try await LoginRole.create(member: "sms_dispatcher", in: database)
        defer { Task { await dispatcher.drop() } }
        let producer = try await LoginRole.create(member: "sms_producer", in: database)
        defer { Task { await producer.drop() } }

        // Work for every path the daemon takes: claims and write-back, a dead worker's lease to rescue,
        // retention, and a paused channel's job to expire.
        try await database.execute(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, finished_at, metadata)
                VALUES ('CHANNEL_LOGIN', '13900000001', 'sent', now() - interval '40 days', '{"old": true}');
            INSERT INTO sms.jobs (channel, phone_number, state, locked_by, locked_until, lease_token, metadata)
                VALUES ('CHANNEL_LOGIN', '13900000002', 'running', 'dead-worker', now() - interval '1 minute', 1,
                        '{"rescue": true}');
            -- Its claim's lease row, as the claim writes it: the rescue finds leases through these.
            INSERT INTO sms.leases (lease_token, worker, until, job_ids)
                SELECT 1, 'dead-worker', now() - interval '1 minute', ARRAY[id] FROM sms.jobs WHERE metadata ? 'rescue';
            SELECT sms.pause('CHANNEL_BIND_PHONE', 'fraud review', NULL);
            """)
        let producing = try await producer.connect()
        try await producing.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '1370000' || lpad(g::text, 4, '0') FROM generate_series(1, 20) g
            """)
        let paused = try await producing.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, expires_at)
            VALUES ('CHANNEL_BIND_PHONE', '13600000001', now() + interval '1 second') RETURNING id
            """
        ).single().requiredInt("id")
        await producing.close()

        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: [
                "SMSD_DATABASE_URL": dispatcher.url, "SMSD_RETENTION_INTERVAL": "1", "SMSD_RETENTION_MAX_AGE_DAYS": "30",
                "SMSD_LEASE_RESCUE_INTERVAL": "0.5",
                // The fraud guard with every limit on: its decisions in the reservation and its evaluation
                // and retention rounds must work with the dispatcher's grants alone.
                "SMSD_FRAUD_MODE": "enforce", "SMSD_FRAUD_PER_PREFIX_HOUR": "50", "SMSD_FRAUD_EVALUATE_INTERVAL": "1",
            ])
        defer { Task { await daemon.stop() } }
        let drained = await eventually(timeout: .seconds(60)) {
            (try? await stateCounts(database)) == ["sent": 21, "expired": 1]
        }
        let counts = try await stateCounts(database)
        #expect(drained, "\(counts): \(daemon.output)")
        let evaluated = await eventually(timeout: .seconds(10)) {
            (try? await database.query("SELECT evaluated_at IS NOT NULL AND pruned_at IS NOT NULL AS done FROM sms.fraud_state")
                .single().bool("done")) == true
        }
        #expect(evaluated, "the fraud watch ran as sms_dispatcher: \(daemon.output)")
        #expect(
            try await database.query("SELECT coalesce(sum(sends), 0)::int AS n FROM sms.fraud_counts WHERE scope = 'country'")
                .single().requiredInt("n") == 21, "the guard counted every send")
        #expect(!daemon.output.contains("permission denied"), "\(daemon.output)")
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE metadata ? 'old'").single()
                .requiredInt("n") == 0, "retention purged the old job")
        #expect(
            try await database.query("SELECT state FROM sms.jobs WHERE metadata ? 'rescue'").single()
                .string("state") == "sent", "the dead worker's job was rescued and sent")
        #expect(
            try await database.query("SELECT state FROM sms.jobs WHERE id = $1", [String(paused)]).single()
                .string("state") == "expired")
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.workers").single().requiredInt("n") == 1,
            "the heartbeat's row")
        #expect(try await sandbox.report().accepted.count == 21)

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(timeout: .seconds(30)) == 0, "\(daemon.output)")
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.workers").single().requiredInt("n") == 0,
            "its row removed on a clean stop")
        #expect(!daemon.output.contains("permission denied"), "\(daemon.output)")

        let db = try await dispatcher.connect()
        for statement in [
            "CREATE TABLE sms.mine (id int)",
            "ALTER TABLE sms.jobs ADD COLUMN mine int",
            "DROP TABLE sms.throttle",
            "CREATE FUNCTION sms.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE INDEX ON sms.jobs (user_ref)",
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '1')",
            "UPDATE sms.jobs SET phone_number = '1'",
            "UPDATE sms.jobs SET priority = 100",
            "DELETE FROM sms.jobs",
            "TRUNCATE sms.attempts",
            "SELECT sms.enqueue('CHANNEL_LOGIN', '1')",
            "SELECT sms.pause()",
            "SELECT * FROM sms.cancel_jobs('{1}')",
        ] {
            try await expectRefused(db, statement)
        }
        await db.close()
    }

    // MARK: the roles themselves

    @Test func definerFunctionsArePinnedAndNotPublicAndTheRolesOwnNothing() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let definers = try await database.query(
            """
            SELECT p.oid::regprocedure::text AS name, p.proconfig::text AS config,
                   EXISTS (SELECT 1 FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                           WHERE a.grantee = 0) AS public
            FROM pg_proc p WHERE p.pronamespace = 'sms'::regnamespace AND p.prosecdef
            """
        ).rows
        #expect(definers.count >= 7, "apply_channel_defaults, enqueue, pause, resume, requeue, cancel, purge")
        for row in definers {
            let name = try row.requiredString("name")
            #expect(try row.bool("public") == false, "\(name) is executable by PUBLIC")
            #expect(try row.string("config")?.contains("search_path=pg_catalog, pg_temp") == true, "\(name)")
        }
        let roles = try await database.query(
            """
            SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles
            WHERE rolname IN ('sms_producer', 'sms_monitor', 'sms_operator', 'sms_dispatcher') ORDER BY rolname
            """
        ).rows
        #expect(roles.count == 4)
        for row in roles {
            let name = try row.requiredString("rolname")
            #expect(
                try row.bool("rolcanlogin") == false && row.bool("rolsuper") == false
                    && row.bool("rolcreaterole") == false && row.bool("rolcreatedb") == false, "\(name)")
        }
        let owned = try await database.query(
            """
            SELECT count(*)::int AS n FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
            WHERE r.rolname LIKE 'sms\\_%'
            """
        ).single().requiredInt("n")
        #expect(owned == 0)
        #expect(
            try await database.query("SELECT pg_has_role('sms_operator', 'sms_monitor', 'MEMBER') AS m").single().bool("m")
                == true)
        #expect(
            try await database.query(
                """
                SELECT has_schema_privilege('sms_dispatcher', 'sms', 'CREATE') OR has_schema_privilege('sms_operator', 'sms', 'CREATE')
                    OR has_schema_privilege('sms_producer', 'sms', 'CREATE') AS c
                """
            ).single().bool("c") == false)
    }

    /// The real 0009 with its role names made unique, so a test can watch roles being created without
    /// touching the ones the other tests use.
    static func renamedRoleMigration(_ suffix: String) throws -> (sql: String, roles: [String]) {
        var sql = try String(contentsOfFile: TestEnvironment.sqlDirectory + "/0009_roles.sql", encoding: .utf8)
        var roles: [String] = []
        for group in ["sms_producer", "sms_monitor", "sms_operator", "sms_dispatcher"] {
            let renamed = "smsd_\(suffix)_" + group.dropFirst(4)
            sql = sql.replacingOccurrences(of: group, with: renamed)
            roles.append(renamed)
        }
        return (sql, roles)
    }

    @Test func twoDatabasesMigratingAtOnceCreateEachRoleOnce() async throws {
        let suffix = "r\(UInt32.random(in: 0..<UInt32.max))"
        let (sql, roles) = try Self.renamedRoleMigration(suffix)
        let first = try await TestDatabase.create(migrated: false)
        let second = try await TestDatabase.create(migrated: false)
        defer {
            Task {
                await first.drop()
                await second.drop()
                await dropRoles(roles)
            }
        }
        let upTo8 = Migrator(
            migrations: try Migrator.load(directory: TestEnvironment.sqlDirectory).migrations.filter { $0.version < 9 })
        for database in [first, second] {
            let connection = try await database.connect()
            try await upTo8.migrate(connection, logger: quietLogger)
            await connection.close()
        }
        let a = try await PostgresConnection.connect(first.url, applicationName: "smsd-roles-a-\(suffix)")
        let b = try await PostgresConnection.connect(second.url, applicationName: "smsd-roles-b-\(suffix)")
        // A has created the roles and not committed: B's CREATE ROLE waits for A, then finds them taken.
        try await a.execute("BEGIN")
        try await a.execute(sql)
        try await b.execute("BEGIN")
        let bMigrates = Task { try await b.execute(sql) }
        let bWaited = await eventually(timeout: .seconds(15)) {
            (try? await first.query(
                """
                SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'
                """, ["smsd-roles-b-\(suffix)"]
            ).single().requiredInt("n")) == 1
        }
        #expect(bWaited, "B should be waiting for A's uncommitted roles")
        try await a.execute("COMMIT")
        await #expect(throws: Never.self) { try await bMigrates.value }
        try await b.execute("COMMIT")
        await a.close()
        await b.close()

        #expect(
            try await first.query(
                "SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY ($1::text[])",
                ["{\(roles.joined(separator: ","))}"]
            ).single().requiredInt("n") == 4)
        #expect(
            try await first.query("SELECT pg_has_role($1, $2, 'MEMBER') AS m", [roles[2], roles[1]]).single().bool("m") == true)
        for database in [first, second] {
            let granted = try await database.query(
                """
                SELECT has_column_privilege($1, 'sms.jobs', 'phone_number', 'INSERT') AS producer_inserts,
                       has_column_privilege($1, 'sms.jobs', 'state', 'INSERT') AS producer_sets_state,
                       has_table_privilege($2, 'sms.attempts', 'SELECT') AS monitor_reads
                """, [roles[0], roles[1]]
            ).single()
            #expect(
                try granted.bool("producer_inserts") == true && granted.bool("producer_sets_state") == false
                    && granted.bool("monitor_reads") == true, "\(database.name)")
        }
    }

    @Test func anOwnerThatMayNotCreateRolesIsToldWhatASuperuserMustRun() async throws {
        let suffix = "o\(UInt32.random(in: 0..<UInt32.max))"
        let (sql, roles) = try Self.renamedRoleMigration(suffix)
        let database = try await TestDatabase.create(migrated: false)
        defer { Task { await database.drop() } }
        let owner = try await LoginRole.create(member: nil, in: database)
        defer { Task { await owner.drop() } }
        let db = try await owner.connect()
        do {
            try await db.execute(sql)
            Issue.record("the migration ran without the right to create roles")
        } catch let error as PostgresError {
            #expect(error.sqlState == "42501", "\(error)")
            #expect(error.message.contains("a superuser must run"), "\(error)")
            for role in roles { #expect(error.message.contains("CREATE ROLE \(role) NOLOGIN;"), "\(error)") }
            #expect(error.message.contains("GRANT \(roles[1]) TO \(roles[2]);"), "\(error)")
        }
        await db.close()
        #expect(
            try await database.query(
                "SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY ($1::text[])",
                ["{\(roles.joined(separator: ","))}"]
            ).single().requiredInt("n") == 0)
    }

    @Test func migrateRunsAsTheSchemaOwnerWithoutSuperuserOnceTheRolesExist() async throws {
        // A migrated database first: the group roles then exist in the cluster.
        let migrated = try await TestDatabase.create()
        await migrated.drop()
        let database = try await TestDatabase.create(migrated: false)
        let owner = try await LoginRole.create(member: nil, in: database)
        let producer = try await LoginRole.create(member: "sms_producer", in: database)
        // The owner can only be dropped with what it owns.
        defer {
            Task {
                await database.drop()
                await owner.drop()
                await producer.drop()
            }
        }
        try await database.query("ALTER DATABASE \(database.name) OWNER TO \(owner.name)")

        let migrate = try await ChildProcess.run(
            binary, ["migrate", "--sql-dir", TestEnvironment.sqlDirectory],
            environment: ["SMSD_DATABASE_URL": owner.url])
        #expect(migrate.status == 0, "\(migrate.output)")
        #expect(migrate.output.contains("schema is at version \(SchemaVersion.required)"), "\(migrate.output)")
        // The trigger runs as this owner (no superuser) and still reads what the producer may not.
        try await database.query("INSERT INTO sms.channel_settings (channel, default_priority) VALUES ('CHANNEL_LOGIN', 7)")
        let db = try await producer.connect()
        let id = try await db.query(
            "INSERT INTO sms.jobs (channel, phone_number) VALUES ('CHANNEL_LOGIN', '13800138000') RETURNING id"
        )
        .single().requiredInt("id")
        await db.close()
        #expect(
            try await database.query("SELECT priority FROM sms.jobs WHERE id = $1", [String(id)]).single().int("priority") == 7)
        #expect(
            try await database.query("SELECT tableowner FROM pg_tables WHERE schemaname = 'sms' AND tablename = 'jobs'")
                .single().string("tableowner") == owner.name)
    }
}

/// A LOGIN role of one test, a member of one group role (or none), and a URL to the test's database as
/// it (the throwaway cluster trusts 127.0.0.1).
struct LoginRole: Sendable {
    let name: String
    let url: String

    static func create(member group: String?, in database: TestDatabase) async throws -> LoginRole {
        let name = "smsd_login_\(UInt32.random(in: 0..<UInt32.max))"
        try await database.query("CREATE ROLE \(name) LOGIN" + (group.map { " IN ROLE \($0)" } ?? ""))
        guard var components = URLComponents(string: database.url) else { throw TestSetupError("odd database URL") }
        components.user = name
        guard let url = components.string else { throw TestSetupError("cannot make a URL for \(name)") }
        return LoginRole(name: name, url: url)
    }

    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(url, applicationName: "smsd-tests \(name)")
    }

    func drop() async { await dropRoles([name]) }
}

func dropRoles(_ names: [String]) async {
    guard let admin = try? await PostgresConnection.connect(try TestEnvironment.adminURL) else { return }
    for name in names { _ = try? await admin.execute("DROP ROLE IF EXISTS \(name)") }
    await admin.close()
}

/// A YAML configuration holding only the database URL, as an operator's commands read it.
struct ConfigFile {
    let directory: URL
    var path: String { directory.appendingPathComponent("sms-dispatcher.yaml").path }

    init(url: String) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-roles-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try "database:\n  url: \(url)\n".write(toFile: path, atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// Runs `sql` and expects the server to refuse it with `sqlState` (42501: insufficient privilege).
func expectRefused(
    _ db: PostgresConnection, _ sql: String, sqlState: String = "42501",
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    do {
        try await db.query(sql)
        Issue.record("allowed, but must be refused: \(sql)", sourceLocation: sourceLocation)
    } catch let error as PostgresError where error.sqlState != nil {
        #expect(error.sqlState == sqlState, "\(sql): \(error)", sourceLocation: sourceLocation)
    }
}

/// Waits (bounded) until `item` (`<id>:<state>`) arrives on `sms_job_events`.
func hear(_ item: String, on db: PostgresConnection, timeout: Duration = .seconds(10)) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let heard = try await db.waitForNotifications(timeout: .milliseconds(500))
            .filter { $0.channel == "sms_job_events" }
            .flatMap { $0.payload.split(separator: ",").map(String.init) }
        if heard.contains(item) { return true }
    }
    return false
}

extension PostgresRows {
    /// The one row a test's statement returns.
    func single() throws -> PostgresRow {
        guard rows.count == 1, let row = first else { throw TestSetupError("expected one row, got \(rows.count)") }
        return row
    }
}
