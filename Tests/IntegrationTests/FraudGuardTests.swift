import Foundation
import PostgresClient
import SMSJobStore
import SMSModel
import Testing
import SMSTestSupport

/// Issue 14: the fraud guard, against a real PostgreSQL, the real genauth-sandbox and real daemons
/// (`SMSD_FRAUD_MODE` is `off` in `startDaemon` by default: every daemon here turns it on). Each rule:
/// the rolling-hour limits (IP, IPv6 /64, user, prefix, country), two daemons racing on one IP, anomaly
/// blocks (made by the real `sms.fraud_evaluate`, enforced by the daemon, shown by `status`, `fraud
/// list` and the metrics, ended by `fraud unblock`), the allow-list, monitor and off modes,
/// `sms.mark_verified`, and anomaly detection end to end in simulated time.
@Suite("Fraud guard")
struct FraudGuardTests {
    let binary = TestEnvironment.executable("sms-dispatcher")

    // MARK: fixtures

    /// A job to insert: its national number (and country code, nil: +86), the producer's client_ip and
    /// user_ref, and a tag (metadata) to find it by.
    struct Job: Sendable {
        var phone: String
        var country: String? = nil
        var ip: String? = nil
        var user: String? = nil
        var tag: String
    }

    /// A job as it ended, with the calls recorded for it in sms.attempts.
    struct Ended: Sendable {
        var id: Int
        var tag: String
        var phone: String
        var state: String
        var attempts: Int
        var message: String?
        var attemptRows: Int
    }

    /// A mainland number: 7 digits that make its prefix (`+86 <prefix7>`), then 4.
    static func number(_ prefix7: String, _ last4: Int) -> String {
        precondition(prefix7.count == 7)
        return prefix7 + String(format: "%04d", last4)
    }

    static func insert(_ database: TestDatabase, _ jobs: [Job]) async throws {
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, phone_country_code, client_ip, user_ref, metadata)
            SELECT 'CHANNEL_LOGIN', x.phone, x.country, x.ip::inet, x.usr, jsonb_build_object('tag', x.tag)
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS x(phone, country, ip, usr, tag, o)
            ORDER BY x.o
            """,
            [
                PostgresArray.literal(jobs.map { Optional($0.phone) }), PostgresArray.literal(jobs.map(\.country)),
                PostgresArray.literal(jobs.map(\.ip)), PostgresArray.literal(jobs.map(\.user)),
                PostgresArray.literal(jobs.map { Optional($0.tag) }),
            ])
    }

    static func ended(_ database: TestDatabase) async throws -> [Ended] {
        try await database.query(
            """
            SELECT j.id, j.metadata->>'tag' AS tag, j.phone_number, j.state, j.attempts, j.message,
                   (SELECT count(*) FROM sms.attempts a WHERE a.job_id = j.id)::int AS attempt_rows
            FROM sms.jobs j ORDER BY j.id
            """
        ).rows.map { row in
            Ended(
                id: try row.requiredInt("id"), tag: try row.string("tag") ?? "", phone: try row.requiredString("phone_number"),
                state: try row.requiredString("state"), attempts: try row.requiredInt("attempts"),
                message: try row.string("message"), attemptRows: try row.requiredInt("attempt_rows"))
        }
    }

    /// Waits (bounded) until `count` jobs exist and none is pending or running.
    static func settled(_ database: TestDatabase, count: Int, timeout: Duration = .seconds(30)) async -> Bool {
        await eventually(timeout: timeout) {
            guard
                let rows = try? await database.query(
                    """
                    SELECT count(*)::int AS n, count(*) FILTER (WHERE state IN ('pending', 'running'))::int AS open FROM sms.jobs
                    """
                ).first
            else { return false }
            return (try? rows.requiredInt("n")) == count && (try? rows.requiredInt("open")) == 0
        }
    }

    static func expectSettled(
        _ database: TestDatabase, count: Int, timeout: Duration = .seconds(30), _ logs: @autoclosure () -> String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let done = await settled(database, count: count, timeout: timeout)
        let counts = try await stateCounts(database)
        #expect(done, "expected \(count) jobs, all settled: \(counts)\n\(done ? "" : logs())", sourceLocation: sourceLocation)
    }

    /// The group `tag`: `sent` of them sent (one call each), the others rejected by the guard with a
    /// message starting `messagePrefix` and holding `naming`, no attempt used, no call recorded.
    static func expectGroup(
        _ jobs: [Ended], tag: String, sent: Int, rejected: Int, messagePrefix: String = "",
        naming: String = "", sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let group = jobs.filter { $0.tag == tag }
        let sentJobs = group.filter { $0.state == "sent" }
        let rejectedJobs = group.filter { $0.state == "rejected" }
        #expect(group.count == sent + rejected, "\(tag): \(group)", sourceLocation: sourceLocation)
        #expect(
            sentJobs.count == sent, "\(tag): sent \(sentJobs.count), expected \(sent): \(group)", sourceLocation: sourceLocation)
        #expect(
            rejectedJobs.count == rejected, "\(tag): rejected \(rejectedJobs.count), expected \(rejected): \(group)",
            sourceLocation: sourceLocation)
        for job in sentJobs {
            #expect(
                job.attempts == 1 && job.attemptRows == 1, "\(tag): a sent job made one call: \(job)",
                sourceLocation: sourceLocation)
            #expect(!(job.message ?? "").contains("fraud guard"), "\(job)", sourceLocation: sourceLocation)
        }
        for job in rejectedJobs {
            let message = job.message ?? ""
            #expect(
                message.hasPrefix(messagePrefix) && message.contains(naming),
                "\(tag): expected a message starting '\(messagePrefix)' naming '\(naming)', got '\(message)'",
                sourceLocation: sourceLocation)
            #expect(
                job.attempts == 0 && job.attemptRows == 0, "\(tag): no attempt used, no call: \(job)",
                sourceLocation: sourceLocation)
        }
    }

    /// The sandbox received exactly one call per sent job, and for no other number.
    static func expectCallsOnlyForSent(
        _ jobs: [Ended], _ sandbox: SandboxProcess,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let report = try await sandbox.report()
        let sent = jobs.filter { $0.state == "sent" }
        #expect(
            report.requests == sent.count, "GenAuth received \(report.requests) calls for \(sent.count) sent jobs",
            sourceLocation: sourceLocation)
        #expect(report.accepted.map(\.phoneNumber).sorted() == sent.map(\.phone).sorted(), sourceLocation: sourceLocation)
    }

    /// The daemon's settings here: the guard on, its watch quick.
    static func guardOn(_ extra: [String: String]) -> [String: String] {
        ["SMSD_FRAUD_MODE": "enforce", "SMSD_LEASE_RESCUE_INTERVAL": "0.5", "SMSD_FRAUD_EVALUATE_INTERVAL": "1"]
            .merging(extra) { _, new in new }
    }

    /// The value of a metric line with these labels (any order), if served.
    static func metric(_ text: String, _ name: String, _ labels: [String]) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            if labels.allSatisfy({ line.contains($0) }), let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
                return value
            }
        }
        return nil
    }

    // MARK: rolling-hour limits

    @Test("per_ip_hour: 3 of 6 jobs from one IP are sent, 3 rejected before any call; an IPv6 /64 is one client")
    func perIPHour() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: Self.guardOn(["SMSD_FRAUD_PER_IP_HOUR": "3"]))
        defer { Task { await daemon.stop() } }

        // Numbers in different prefixes, one job per phone: only the IP limit can stop them.
        var jobs = (0..<6).map { Job(phone: Self.number("139\(1000 + $0)", 1), ip: "203.0.113.7", tag: "ipv4") }
        // Four addresses of one /64 (a subscriber rotating addresses), and one of the next /64.
        jobs += ["2001:db8:1:2::1", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2:abcd::9"]
            .enumerated().map { Job(phone: Self.number("139\(2000 + $0.offset)", 2), ip: $0.element, tag: "ipv6") }
        jobs.append(Job(phone: Self.number("1393000", 3), ip: "2001:db8:1:3::1", tag: "other-64"))
        try await Self.insert(database, jobs)

        try await Self.expectSettled(database, count: jobs.count, daemon.output)
        let ended = try await Self.ended(database)
        Self.expectGroup(
            ended, tag: "ipv4", sent: 3, rejected: 3,
            messagePrefix: "fraud guard: per_ip_hour: its client_ip had ", naming: "(fraud.per_ip_hour = 3)")
        Self.expectGroup(
            ended, tag: "ipv6", sent: 3, rejected: 1,
            messagePrefix: "fraud guard: per_ip_hour: its client_ip had ", naming: "(fraud.per_ip_hour = 3)")
        Self.expectGroup(ended, tag: "other-64", sent: 1, rejected: 0)
        try await Self.expectCallsOnlyForSent(ended, sandbox)
        // The guard counted what it let through, per client key.
        let counted = try await database.query(
            """
            SELECT key, sum(sends)::int AS sends, sum(requests)::int AS requests FROM sms.fraud_counts WHERE scope = 'ip'
            GROUP BY key ORDER BY key
            """
        ).rows.map { "\(try $0.requiredString("key"))=\(try $0.requiredInt("sends"))/\(try $0.requiredInt("requests"))" }
        #expect(counted == ["2001:db8:1:2::/64=3/4", "2001:db8:1:3::/64=1/1", "203.0.113.7=3/6"], "\(counted)")
    }

    /// Dual-stack servers often report IPv4 clients as IPv4-mapped IPv6 (`::ffff:a.b.c.d`, e.g. Node's
    /// `socket.remoteAddress`). Each is one IPv4 client; taken as an IPv6 /64 they would all be `::/64`,
    /// one client for the whole IPv4 internet, and per_ip_hour would stop every user but the first few.
    @Test("IPv4-mapped client addresses (::ffff:a.b.c.d) are distinct clients")
    func ipv4MappedClients() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        var settings = FraudSettings()
        settings.perIPHour = 1
        let db = try await database.connect()
        let decided = try await db.run(
            DecideFraud(
                requests: [
                    .init(phoneKey: "+86 13910000001", clientIP: "::ffff:203.0.113.7", userRef: nil),
                    .init(phoneKey: "+86 13920000001", clientIP: "::ffff:198.51.100.9", userRef: nil),
                ], settings: settings))
        let keys = try await db.query("SELECT sms.client_key('::ffff:203.0.113.7') AS k").single().string("k")
        await db.close()
        #expect(decided.map(\.decision) == [.pass, .pass], "two clients, one SMS each: \(decided)")
        #expect(keys == "203.0.113.7", "the client key of ::ffff:203.0.113.7 is \(keys ?? "NULL")")
    }

    struct LimitCase: Sendable, CustomTestStringConvertible {
        var rule: String
        var environment: [String: String]
        var international = false
        /// 6 jobs sharing the limited key: 3 go, 3 are stopped.
        var limited: [Job]
        /// Jobs with another key: all go.
        var others: [Job]
        var messagePrefix: String
        var testDescription: String { rule }
    }

    static let limitCases: [LimitCase] = [
        LimitCase(
            rule: "per_user_hour", environment: ["SMSD_FRAUD_PER_USER_HOUR": "3"],
            limited: (0..<6).map {
                Job(phone: number("139\(2100 + $0)", 1), ip: "198.51.100.\($0 + 1)", user: "user-42", tag: "limited")
            },
            others: [Job(phone: number("1392200", 1), ip: "198.51.100.50", user: "user-43", tag: "other")],
            messagePrefix: "fraud guard: per_user_hour: its user_ref had "),
        LimitCase(
            rule: "per_prefix_hour", environment: ["SMSD_FRAUD_PER_PREFIX_HOUR": "3"],
            limited: (0..<6).map { Job(phone: number("1397777", $0 * 7), tag: "limited") },
            others: [Job(phone: number("1397778", 1), tag: "other"), Job(phone: number("1397776", 2), tag: "other")],
            messagePrefix: "fraud guard: per_prefix_hour: its prefix had "),
        LimitCase(
            rule: "per_country_hour", environment: ["SMSD_FRAUD_PER_COUNTRY_HOUR": "3", "SMSD_COUNTRIES_INTERNATIONAL": "true"],
            international: true,
            limited: (0..<6).map { Job(phone: number("139\(3100 + $0)", 1), tag: "limited") },
            others: [Job(phone: "91234567", country: "+852", tag: "other")],
            messagePrefix: "fraud guard: per_country_hour: its country had "),
    ]

    @Test(
        "per_user_hour, per_prefix_hour, per_country_hour: the limit's worth is sent, the rest rejected naming the rule and key",
        arguments: limitCases)
    func rollingLimit(_ limit: LimitCase) async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(limit.international ? ["--international"] : [])
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(database: database, sandbox: sandbox, extra: Self.guardOn(limit.environment))
        defer { Task { await daemon.stop() } }
        try await Self.insert(database, limit.limited + limit.others)
        try await Self.expectSettled(database, count: limit.limited.count + limit.others.count, daemon.output)
        let ended = try await Self.ended(database)
        Self.expectGroup(
            ended, tag: "limited", sent: 3, rejected: 3, messagePrefix: limit.messagePrefix,
            naming: "had 3 SMS in the last hour (fraud.\(limit.rule) = 3)")
        Self.expectGroup(ended, tag: "other", sent: limit.others.count, rejected: 0)
        try await Self.expectCallsOnlyForSent(ended, sandbox)
    }

    // MARK: two daemons, one IP

    @Test("two daemons racing on one IP never let more than fraud.per_ip_hour through (three rounds of 200 jobs)")
    func twoDaemonsRaceOnOneIP() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let limit = 10
        let perRound = 200
        func round(_ r: Int) -> [Job] {
            // Every job its own phone and prefix: only the IP limit applies.
            (0..<perRound).map {
                Job(
                    phone: Self.number("13\(String(format: "%05d", r * 1000 + $0))", 1), ip: "203.0.113.\(101 + r)",
                    tag: "round-\(r)")
            }
        }
        // Round 0: queued before the daemons start, both start at once.
        try await Self.insert(database, round(0))
        let settings = Self.guardOn(["SMSD_FRAUD_PER_IP_HOUR": String(limit), "SMSD_CONCURRENCY": "16"])
        let a = try startDaemon(
            database: database, sandbox: sandbox, extra: settings.merging(["SMSD_WORKER_ID": "fraud-race-a"]) { _, new in new })
        defer { Task { await a.stop() } }
        let b = try startDaemon(
            database: database, sandbox: sandbox, extra: settings.merging(["SMSD_WORKER_ID": "fraud-race-b"]) { _, new in new })
        defer { Task { await b.stop() } }
        try await Self.expectSettled(database, count: perRound, timeout: .seconds(40), a.output + "\n" + b.output)
        // Rounds 1 and 2: inserted while both run (both hear the NOTIFY and claim at once); round 2 from
        // two producers at the same time.
        try await Self.insert(database, round(1))
        try await Self.expectSettled(database, count: 2 * perRound, timeout: .seconds(40), a.output + "\n" + b.output)
        let jobs2 = round(2)
        async let first: Void = Self.insert(database, Array(jobs2[..<(perRound / 2)]))
        async let second: Void = Self.insert(database, Array(jobs2[(perRound / 2)...]))
        _ = try await (first, second)
        try await Self.expectSettled(database, count: 3 * perRound, timeout: .seconds(40), a.output + "\n" + b.output)

        let ended = try await Self.ended(database)
        for r in 0..<3 {
            Self.expectGroup(
                ended, tag: "round-\(r)", sent: limit, rejected: perRound - limit,
                messagePrefix: "fraud guard: per_ip_hour: its client_ip had ",
                naming: "had \(limit) SMS in the last hour (fraud.per_ip_hour = \(limit))")
        }
        try await Self.expectCallsOnlyForSent(ended, sandbox)
        // Both daemons took part (each claimed jobs); the heartbeat publishes the counters.
        let bothClaimed = await eventually(timeout: .seconds(5)) {
            let rows = (try? await database.query("SELECT id, claimed FROM sms.workers WHERE id LIKE 'fraud-race-%'").rows) ?? []
            return rows.count == 2 && rows.allSatisfy { ((try? $0.int("claimed")) ?? 0) > 0 }
        }
        let workers = try await database.query("SELECT id, claimed FROM sms.workers").rows
            .map { "\(try $0.string("id") ?? "?")=\(try $0.int("claimed") ?? 0)" }
        #expect(bothClaimed, "both daemons claimed jobs: \(workers)")
    }

    // MARK: anomaly blocks

    @Test(
        "an anomaly block made by sms.fraud_evaluate: enforced by the daemon (a trusted user passes), shown by fraud list, status and the metrics, ended by fraud unblock and not remade at once"
    )
    func anomalyBlockUnblock() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let prefix = "+86 1391234"
        // A history: a day and more of a dozen codes an hour in the prefix, nearly all verified, and a busy
        // country (so a burst in one prefix is no anomaly for +86). Folded up to this minute.
        try await database.execute(
            """
            INSERT INTO sms.fraud_baselines (scope, key, first_seen, folded_until, hourly_sends, hourly_verified) VALUES
                ('prefix', '\(prefix)', now() - interval '30 hours', date_trunc('minute', now()), 12, 11),
                ('country', '+86', now() - interval '30 hours', date_trunc('minute', now()), 20000, 18000);
            UPDATE sms.fraud_state SET folded_until = date_trunc('minute', now());
            """)
        var settings = FraudSettings()
        settings.perIPHour = 0
        settings.perUserHour = 0
        settings.perPrefixHour = 100
        let db = try await database.connect()
        defer { Task { await db.close() } }
        // The burst: 40 codes in the prefix now, none verified. The same statement the daemon's reservation runs.
        let burst = (0..<40).map {
            DecideFraud.Request(phoneKey: prefix + String(format: "%04d", $0), clientIP: nil, userRef: nil)
        }
        let decided = try await db.run(DecideFraud(requests: burst, settings: settings))
        #expect(decided.allSatisfy { $0.decision == .pass }, "before the block, the burst is within the limits: \(decided)")
        // A user who verified a code lately (in another prefix).
        try await db.run(RecordVerifications(phoneKeys: ["+86 15000000001"], userRefs: ["trusted-7"]))
        let changes = try await db.run(EvaluateFraud(settings: settings, interval: .zero))
        #expect(
            changes.map { "\($0.block.scope.rawValue) \($0.block.key) \($0.isNew)" } == ["prefix \(prefix) true"], "\(changes)")
        #expect(changes.first?.block.reason.hasPrefix("anomaly: 40 requests in 10 min") == true, "\(changes)")

        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let port = try freeLocalPort()
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.guardOn([
                "SMSD_METRICS_LISTEN": "127.0.0.1:\(port)", "SMSD_FRAUD_PER_PREFIX_HOUR": "100",
            ]))
        defer { Task { await daemon.stop() } }
        try await Self.insert(
            database,
            [
                Job(phone: "13912349001", tag: "blocked"), Job(phone: "13912349002", ip: "203.0.113.20", tag: "blocked"),
                Job(phone: "13912349003", user: "stranger", tag: "blocked"),
                Job(phone: "13912349004", user: "trusted-7", tag: "trusted"),
                Job(phone: "13955559999", tag: "elsewhere"),
            ])
        try await Self.expectSettled(database, count: 5, daemon.output)
        var ended = try await Self.ended(database)
        Self.expectGroup(
            ended, tag: "blocked", sent: 0, rejected: 3,
            messagePrefix: "fraud guard: prefix_block: the number's prefix is blocked: anomaly: ",
            naming: "blocked until")
        Self.expectGroup(ended, tag: "trusted", sent: 1, rejected: 0)
        Self.expectGroup(ended, tag: "elsewhere", sent: 1, rejected: 0)
        try await Self.expectCallsOnlyForSent(ended, sandbox)

        // What operators see: fraud list and status as a monitor, the daemon's metrics.
        let monitor = try await LoginRole.create(member: "sms_monitor", in: database)
        defer { Task { await monitor.drop() } }
        let operatorRole = try await LoginRole.create(member: "sms_operator", in: database)
        defer { Task { await operatorRole.drop() } }
        let monitorConfig = try ConfigFile(url: monitor.url)
        let operatorConfig = try ConfigFile(url: operatorRole.url)
        defer {
            monitorConfig.remove()
            operatorConfig.remove()
        }
        let list = try await ChildProcess.run(binary, ["fraud", "list", "--config", monitorConfig.path])
        #expect(list.status == 0, "\(list.output)")
        #expect(list.output.contains("blocks in force: 1") && list.output.contains("prefix \(prefix)"), "\(list.output)")
        #expect(list.output.contains("prefix_block blocked: 3"), "\(list.output)")
        let status = try await ChildProcess.run(binary, ["status", "--config", monitorConfig.path])
        #expect(status.status == 0, "\(status.output)")
        #expect(
            status.output.contains("FRAUD BLOCK") && status.output.contains(prefix) && status.output.contains("anomaly: "),
            "\(status.output)")
        #expect(status.output.contains("Fraud guard decisions, last hour: prefix_block blocked=3"), "\(status.output)")
        var metrics = ""
        let shown = await eventually(timeout: .seconds(10)) {
            metrics = (try? await HTTP.request("GET", "http://127.0.0.1:\(port)/metrics").body) ?? ""
            return Self.metric(metrics, "smsd_fraud_blocks", [#"scope="prefix""#]) == 1
                && Self.metric(metrics, "smsd_fraud_decisions_total", [#"rule="prefix_block""#, #"decision="blocked""#]) == 3
        }
        #expect(shown, "\(metrics.split(separator: "\n").filter { $0.contains("fraud") })")
        #expect(Self.metric(metrics, "smsd_fraud_blocks", [#"scope="country""#]) == 0)

        // The operator ends it (written without the space); new jobs in the prefix go, and neither the
        // daemon's watch (every second) nor another round made here blocks it again at once.
        let unblock = try await ChildProcess.run(binary, ["fraud", "unblock", "+861391234", "--config", operatorConfig.path])
        #expect(unblock.status == 0 && unblock.output.contains("unblocked +861391234"), "\(unblock.output)")
        let cleared = try await database.query(
            "SELECT cleared_by, until <= now() AS ended FROM sms.fraud_blocks WHERE key = $1", [prefix]
        ).single()
        #expect(try cleared.string("cleared_by") == operatorRole.name && cleared.bool("ended") == true)
        try await Self.insert(
            database, [Job(phone: "13912349005", tag: "after"), Job(phone: "13912349006", user: "stranger", tag: "after")])
        try await Self.expectSettled(database, count: 7, daemon.output)
        let again = try await db.run(EvaluateFraud(settings: settings, interval: .zero))
        #expect(
            again.isEmpty, "the unblocked prefix is still anomalous, but an operator's unblock holds for a block time: \(again)")
        #expect(try await db.run(ListFraudBlocks()).isEmpty)
        ended = try await Self.ended(database)
        Self.expectGroup(ended, tag: "after", sent: 2, rejected: 0)
        try await Self.expectCallsOnlyForSent(ended, sandbox)
        let gone = await eventually(timeout: .seconds(10)) {
            metrics = (try? await HTTP.request("GET", "http://127.0.0.1:\(port)/metrics").body) ?? ""
            return Self.metric(metrics, "smsd_fraud_blocks", [#"scope="prefix""#]) == 0
        }
        #expect(gone, "\(metrics.split(separator: "\n").filter { $0.contains("fraud") })")
        #expect(
            await eventually(timeout: .seconds(5)) { daemon.output.contains("fraud guard block ended: prefix \(prefix)") },
            "\(daemon.output)")
        let noBlock = try await ChildProcess.run(binary, ["fraud", "unblock", "+861391234", "--config", operatorConfig.path])
        #expect(noBlock.status == 1 && noBlock.output.contains("no block in force"), "\(noBlock.output)")
        let statusAfter = try await ChildProcess.run(binary, ["status", "--config", monitorConfig.path])
        #expect(statusAfter.output.contains("Fraud guard blocks: none"), "\(statusAfter.output)")
        // A monitor may look, not unblock.
        let refused = try await ChildProcess.run(binary, ["fraud", "unblock", "+861391234", "--config", monitorConfig.path])
        #expect(refused.status != 0 && refused.output.contains("permission denied"), "\(refused.output)")
        #expect(!daemon.output.contains("fraud guard: could not evaluate"), "\(daemon.output)")
    }

    // MARK: allow-list

    @Test(
        "fraud allow: numbers in the range pass over the per-prefix limit and are not counted; --remove ends it; bad prefixes are refused"
    )
    func allowList() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let operatorRole = try await LoginRole.create(member: "sms_operator", in: database)
        defer { Task { await operatorRole.drop() } }
        let config = try ConfigFile(url: operatorRole.url)
        defer { config.remove() }
        func fraud(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await ChildProcess.run(binary, ["fraud"] + arguments + ["--config", config.path])
        }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox, extra: Self.guardOn(["SMSD_FRAUD_PER_PREFIX_HOUR": "2"]))
        defer { Task { await daemon.stop() } }

        let allowed = try await fraud(["allow", "+86 139555", "--note", "QA test range"])
        #expect(allowed.status == 0 && allowed.output.contains("allowed +86139555"), "\(allowed.output)")
        // Five in an allowed prefix (limit 2), three in another.
        try await Self.insert(
            database,
            (1...5).map { Job(phone: Self.number("1395550", $0), ip: "203.0.113.30", tag: "allowed") }
                + (1...3).map { Job(phone: Self.number("1396660", $0), tag: "control") })
        try await Self.expectSettled(database, count: 8, daemon.output)
        var ended = try await Self.ended(database)
        Self.expectGroup(ended, tag: "allowed", sent: 5, rejected: 0)
        Self.expectGroup(
            ended, tag: "control", sent: 2, rejected: 1, messagePrefix: "fraud guard: per_prefix_hour: its prefix had ",
            naming: "(fraud.per_prefix_hour = 2)")
        #expect(
            try await database.query(
                """
                SELECT count(*)::int AS n FROM sms.fraud_counts WHERE key IN ('+86 1395550', '203.0.113.30')
                """
            ).single().requiredInt("n") == 0, "allowed numbers are not counted")
        #expect(
            try await database.query("SELECT sum(requests)::int AS n FROM sms.fraud_counts WHERE scope = 'country'")
                .single().int("n") == 3, "only the control jobs are counted for +86")

        let list = try await fraud(["list"])
        #expect(
            list.output.contains("allow-list: 1") && list.output.contains("+86139555  added by \(operatorRole.name)")
                && list.output.contains("QA test range"), "\(list.output)")

        let removed = try await fraud(["allow", "--remove", "+86139555"])
        #expect(removed.status == 0 && removed.output.contains("removed +86139555"), "\(removed.output)")
        let notThere = try await fraud(["allow", "--remove", "+86139555"])
        #expect(notThere.status == 1 && notThere.output.contains("not on the allow-list"), "\(notThere.output)")
        // Counted from now: two of three go (the five before were not counted).
        try await Self.insert(database, (6...8).map { Job(phone: Self.number("1395550", $0), tag: "removed") })
        try await Self.expectSettled(database, count: 11, daemon.output)
        ended = try await Self.ended(database)
        Self.expectGroup(
            ended, tag: "removed", sent: 2, rejected: 1, messagePrefix: "fraud guard: per_prefix_hour: its prefix had ",
            naming: "had 2 SMS")
        try await Self.expectCallsOnlyForSent(ended, sandbox)

        for bad in ["86138", "+0138", "+86abc", "+1234567890123456", "+"] {
            let refused = try await fraud(["allow", bad])
            #expect(
                refused.status == 64 && refused.output.contains("PREFIX must be + and the country code"),
                "\(bad): \(refused.output)")
        }
        // The function refuses them too, whoever calls it.
        let db = try await operatorRole.connect()
        try await expectRefused(db, "SELECT sms.fraud_allow('86 138')", sqlState: "22023")
        try await expectRefused(db, "INSERT INTO sms.fraud_allowed (prefix) VALUES ('+86138')")
        await db.close()
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.fraud_allowed").single().requiredInt("n") == 0)
    }

    // MARK: monitor and off

    @Test("monitor mode sends everything, counts the would-be stops as flagged and logs them")
    func monitorMode() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.guardOn([
                "SMSD_FRAUD_MODE": "monitor", "SMSD_FRAUD_PER_IP_HOUR": "2",
            ]))
        defer { Task { await daemon.stop() } }
        try await Self.insert(
            database, (0..<5).map { Job(phone: Self.number("139\(4000 + $0)", 1), ip: "203.0.113.40", tag: "monitored") })
        try await Self.expectSettled(database, count: 5, daemon.output)
        let ended = try await Self.ended(database)
        Self.expectGroup(ended, tag: "monitored", sent: 5, rejected: 0)
        try await Self.expectCallsOnlyForSent(ended, sandbox)

        let db = try await database.connect()
        let decisions = try await db.run(FraudDecisionCounts())
        await db.close()
        #expect(decisions.map { "\($0.rule) \($0.decision) \($0.count)" } == ["per_ip_hour flagged 3"], "\(decisions)")
        #expect(
            try await database.query("SELECT sum(sends)::int AS n FROM sms.fraud_counts WHERE scope = 'ip'").single().int("n")
                == 5,
            "flagged jobs are sent, and counted as sends")
        let list = try await ChildProcess.run(binary, ["fraud", "list"], environment: ["SMSD_DATABASE_URL": database.url])
        #expect(list.status == 0 && list.output.contains("per_ip_hour flagged: 3"), "\(list.output)")
        #expect(
            await eventually(timeout: .seconds(5)) {
                daemon.output.contains("fraud guard (monitor mode) let through jobs it would have stopped")
            }, "\(daemon.output)")
        #expect(daemon.output.contains("fraud guard (monitor mode, sent): per_ip_hour: its client_ip had "), "\(daemon.output)")
    }

    @Test("off mode decides and counts nothing")
    func offMode() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start()
        defer { Task { await sandbox.stop() } }
        let daemon = try startDaemon(
            database: database, sandbox: sandbox,
            extra: Self.guardOn([
                "SMSD_FRAUD_MODE": "off", "SMSD_FRAUD_PER_IP_HOUR": "1", "SMSD_FRAUD_PER_PREFIX_HOUR": "1",
            ]))
        defer { Task { await daemon.stop() } }
        try await Self.insert(
            database, (0..<4).map { Job(phone: Self.number("1394100", $0), ip: "203.0.113.41", user: "u", tag: "off") })
        try await Self.expectSettled(database, count: 4, daemon.output)
        let ended = try await Self.ended(database)
        Self.expectGroup(ended, tag: "off", sent: 4, rejected: 0)
        try await Self.expectCallsOnlyForSent(ended, sandbox)
        try await Task.sleep(for: .seconds(1.5))  // a fraud watch round would have come by
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.fraud_counts").single().requiredInt("n") == 0)
        #expect(
            try await database.query("SELECT folded_until FROM sms.fraud_state").single().string("folded_until") == nil,
            "no evaluation rounds while off")
    }

    // MARK: mark_verified

    @Test(
        "sms.mark_verified as the producer: true once for a sent job, false otherwise; counted for prefix and country; the user becomes known; no operator functions"
    )
    func markVerified() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let producer = try await LoginRole.create(member: "sms_producer", in: database)
        defer { Task { await producer.drop() } }
        let ids = try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, sent_at, finished_at, client_ip, user_ref, metadata) VALUES
                ('CHANNEL_LOGIN', '13800130001', 'sent', 1, now(), now(), '203.0.113.50', 'verifier-1', '{"tag": "sent"}'),
                ('CHANNEL_LOGIN', '13800130002', 'pending', 0, NULL, NULL, NULL, 'verifier-2', '{"tag": "pending"}'),
                ('CHANNEL_LOGIN', '13800130003', 'rejected', 0, NULL, now(), NULL, 'verifier-3', '{"tag": "rejected"}'),
                ('CHANNEL_LOGIN', '13800130004', 'failed', 5, NULL, now(), NULL, 'verifier-4', '{"tag": "failed"}')
            RETURNING id
            """
        ).rows.map { try $0.requiredInt("id") }
        // Issue 26: only the login role that enqueued a job reports it verified; another producer's sent
        // job is refused like an unknown one (it could otherwise steer the guard's baselines).
        try await database.query("UPDATE sms.jobs SET enqueued_by = $1", [producer.name])
        let others = try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number, state, attempts, sent_at, finished_at, user_ref) VALUES
                ('CHANNEL_LOGIN', '13800130005', 'sent', 1, now(), now(), 'verifier-5')
            RETURNING id, enqueued_by
            """
        ).single()
        #expect(try others.string("enqueued_by") == "postgres", "the insert trigger records the login role")
        let db = try await producer.connect()
        #expect(
            try await db.run(MarkVerified(jobID: Int64(try others.requiredInt("id")))) == false,
            "another role's job")
        #expect(try await db.run(MarkVerified(jobID: Int64(ids[0]))) == true)
        #expect(try await db.run(MarkVerified(jobID: Int64(ids[0]))) == false, "only once")
        for id in ids.dropFirst() + [ids.max()! + 1000] {
            #expect(try await db.run(MarkVerified(jobID: Int64(id))) == false, "job \(id) is not a sent job")
        }
        #expect(
            try await db.query("SELECT verified_at IS NOT NULL AS v FROM sms.jobs WHERE id = $1", [String(ids[0])]).single()
                .bool("v") == true, "the producer reads whether it reported a job verified")
        // A producer reports; it does not forge counters, evaluate, or manage the guard.
        for statement in [
            "SELECT sms.fraud_unblock('+86')",
            "SELECT sms.fraud_allow('+86138')",
            "SELECT sms.fraud_disallow('+86138')",
            "SELECT sms.fraud_verified(now(), ARRAY['+86 13800130002'], ARRAY['verifier-2'])",
            "SELECT * FROM sms.fraud_decide(now(), ARRAY['+86 13800130002'], ARRAY[NULL]::inet[], ARRAY[NULL], 'enforce', '{1,1,1,1}', 0)",
            "SELECT * FROM sms.fraud_evaluate(now(), 5, 20, 0.2, 30, 24, 30)",
            "SELECT count(*) FROM sms.fraud_blocks",
            "SELECT count(*) FROM sms.fraud_counts",
            "INSERT INTO sms.fraud_trusted (user_ref, verified_at) VALUES ('me', now())",
        ] {
            try await expectRefused(db, statement)
        }
        await db.close()

        let counts = try await database.query(
            """
            SELECT scope, key, sum(verified)::int AS verified FROM sms.fraud_verifications GROUP BY scope, key ORDER BY scope, key
            """
        ).rows.map { "\(try $0.requiredString("scope")) \(try $0.requiredString("key")) v=\(try $0.requiredInt("verified"))" }
        #expect(counts == ["country +86 v=1", "prefix +86 1380013 v=1"], "\(counts)")
        // Verifications never touch the reservation's counter rows (a producer's open transaction must
        // not hold a row every reservation of the country needs).
        #expect(try await database.query("SELECT count(*)::int AS n FROM sms.fraud_counts").single().requiredInt("n") == 0)
        let trusted = try await database.query("SELECT user_ref FROM sms.fraud_trusted ORDER BY 1").rows.map {
            try $0.requiredString("user_ref")
        }
        #expect(trusted == ["verifier-1"])
        #expect(
            try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE verified_at IS NOT NULL").single()
                .requiredInt("n") == 1)
        let defined = try await database.query(
            """
            SELECT prosecdef, proconfig::text AS config FROM pg_proc WHERE oid = 'sms.mark_verified(bigint)'::regprocedure
            """
        ).single()
        #expect(
            try defined.bool("prosecdef") == true && defined.string("config")?.contains("search_path=pg_catalog, pg_temp") == true
        )
    }

    // MARK: anomaly detection in simulated time

    @Test(
        "anomaly detection, simulated: a verified country bursting 20x is blocked within minutes (known users pass); a new prefix and a never-verifying producer are not"
    )
    func anomalyDetectionSimulated() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let db = try await database.connect()
        defer { Task { await db.close() } }
        var settings = FraudSettings()
        settings.perIPHour = 0
        settings.perUserHour = 0
        settings.perPrefixHour = 50
        settings.perCountryHour = 0
        #expect(
            settings.anomalyFactor == 5 && settings.anomalyMinRequests == 20 && settings.baselineHours == 24,
            "the figures below assume the defaults")
        let t0 = 1_735_689_600.0  // 2025-01-01 00:00 UTC
        func key(_ cc: String, _ national: String) -> String { "\(cc) \(national)" }
        var changes: [(minute: Double, change: EvaluateFraud.Change)] = []

        // 25 simulated hours, a round every 10 minutes: +62 sends 60 codes an hour over 10 prefixes, 90% of
        // them verified half a minute later by their (so known) users; +63 as many, never verified.
        let rounds = 150
        var historyDecisions: [FraudDecision] = []
        for round in 0..<rounds {
            let t = t0 + Double(round) * 600
            let indonesia = (0..<10).map { key("+62", "81100\($0)" + String(format: "%04d", round)) }
            let philippines = (0..<10).map { key("+63", "91700\($0)" + String(format: "%04d", round)) }
            let requests =
                indonesia.enumerated().map {
                    DecideFraud.Request(phoneKey: $0.element, clientIP: nil, userRef: "loyal-\($0.offset)")
                }
                + philippines.map { DecideFraud.Request(phoneKey: $0, clientIP: nil, userRef: nil) }
            historyDecisions += try await db.run(DecideFraud(requests: requests, settings: settings, now: t)).map(\.decision)
            try await db.run(
                RecordVerifications(phoneKeys: Array(indonesia.prefix(9)), userRefs: (0..<9).map { "loyal-\($0)" }, now: t + 30))
            changes += try await db.run(EvaluateFraud(settings: settings, now: t + 60)).map { (minute: t + 60, change: $0) }
        }
        #expect(historyDecisions.count == rounds * 20 && historyDecisions.allSatisfy { $0 == .pass })
        #expect(changes.isEmpty, "steady traffic is never blocked: \(changes)")
        let baselines = try await database.query(
            """
            SELECT key, hourly_sends, hourly_verified FROM sms.fraud_baselines WHERE scope = 'country' ORDER BY key
            """
        ).rows.map {
            (try $0.requiredString("key"), try $0.requiredDouble("hourly_sends"), try $0.requiredDouble("hourly_verified"))
        }
        #expect(baselines.count == 2 && baselines[0].0 == "+62" && baselines[1].0 == "+63", "\(baselines)")

        // The attacks, minute by minute for 10 minutes from the 25th hour: +62 at 20 times its rate (new
        // prefixes, unverified) beside its own users' codes; +63 likewise; and a prefix of a country never
        // seen (+44 7700900), 20 a minute.
        let attackStart = t0 + Double(rounds) * 600
        var firstBlock: Int? = nil
        var decided: [(minute: Int, group: String, decision: FraudDecision, rule: FraudRule?)] = []
        for minute in 0..<10 {
            let t = attackStart + Double(minute) * 60
            var requests: [(group: String, request: DecideFraud.Request)] = []
            // One of the users who verified in the history (loyal-9 never did: the unverified 10%).
            let loyal = key("+62", "81100\(minute % 9)" + String(format: "%04d", 9000 + minute))
            requests.append(("loyal", .init(phoneKey: loyal, clientIP: nil, userRef: "loyal-\(minute % 9)")))
            requests.append(
                ("stranger", .init(phoneKey: key("+62", "8120000\(minute)000"), clientIP: nil, userRef: "stranger-\(minute)")))
            for k in 0..<20 {
                let mk = String(format: "%02d%02d", minute, k)
                requests.append(
                    ("+62", .init(phoneKey: key("+62", "899\(mk)0000"), clientIP: "198.51.100.\(k + 1)", userRef: nil)))
                requests.append(("+63", .init(phoneKey: key("+63", "999\(mk)0000"), clientIP: nil, userRef: nil)))
                requests.append(
                    (
                        "+44",
                        .init(
                            phoneKey: key("+44", "7700900" + String(format: "%04d", minute * 20 + k)), clientIP: nil, userRef: nil
                        )
                    ))
            }
            let answers = try await db.run(DecideFraud(requests: requests.map(\.request), settings: settings, now: t))
            #expect(answers.count == requests.count)
            for (sent, answer) in zip(requests, answers) {
                decided.append((minute: minute, group: sent.group, decision: answer.decision, rule: answer.rule))
            }
            try await db.run(RecordVerifications(phoneKeys: [loyal], userRefs: ["loyal-\(minute % 9)"], now: t + 30))
            let round = try await db.run(EvaluateFraud(settings: settings, now: t + 59))
            changes += round.map { (minute: t + 59, change: $0) }
            if firstBlock == nil, round.contains(where: { $0.block.scope == .country && $0.block.key == "+62" && $0.isNew }) {
                firstBlock = minute
            }
        }
        let made = changes.map { "\($0.change.block.scope.rawValue) \($0.change.block.key)" }
        #expect(Set(made) == ["country +62"], "only +62 is blocked, as a country: \(made)")
        let blockedAt = try #require(firstBlock, "+62 was never blocked: \(changes)")
        #expect(blockedAt <= 4, "blocked within five evaluated minutes (at minute \(blockedAt))")
        // From the minute after the block: every +62 attack request and the stranger stopped, the known user not.
        for entry in decided where entry.minute > blockedAt {
            switch entry.group {
            case "+62", "stranger":
                #expect(entry.decision == .blocked && entry.rule == .countryBlock, "\(entry)")
            case "loyal":
                #expect(entry.decision == .pass, "a user who verified lately passes the block: \(entry)")
            default: break
            }
        }
        // Before it nothing was stopped in +62; +63 was never stopped; +44 only by the per-prefix limit.
        #expect(
            decided.filter { $0.minute <= blockedAt && ["+62", "loyal", "stranger"].contains($0.group) }.allSatisfy {
                $0.decision == .pass
            })
        #expect(
            decided.filter { $0.group == "+63" }.allSatisfy { $0.decision == .pass },
            "a producer that never verifies gets no anomaly blocks")
        let uk = decided.filter { $0.group == "+44" }
        #expect(uk.filter { $0.decision == .pass }.count == 50, "a new prefix: the per-prefix limit's worth goes")
        #expect(
            uk.filter { $0.decision != .pass }.allSatisfy { $0.decision == .blocked && $0.rule == .perPrefixHour },
            "\(Set(uk.map { "\($0.decision) \($0.rule?.rawValue ?? "-")" }))")

        // The block as the reservation words it, and in monitor mode only flagged.
        let later = attackStart + 600
        let detail = try await database.query(
            """
            SELECT r_decision, r_rule, r_detail FROM sms.fraud_decide(to_timestamp($1::float8), ARRAY['+62 81234560000'],
                ARRAY[NULL]::inet[], ARRAY[NULL]::text[], $2, '{0,0,50,0}', 30)
            """, [String(later), "enforce"]
        ).single()
        #expect(try detail.string("r_decision") == "blocked" && detail.string("r_rule") == "country_block")
        let text = try detail.string("r_detail") ?? ""
        #expect(
            text.hasPrefix("fraud guard: country_block: the number's country is blocked: anomaly: ")
                && text.contains("blocked until"), "\(text)")
        var monitor = settings
        monitor.mode = .monitor
        let flagged = try await db.run(
            DecideFraud(
                requests: [.init(phoneKey: "+62 81234560001", clientIP: nil, userRef: nil)],
                settings: monitor, now: later))
        #expect(flagged.map(\.decision) == [.flagged] && flagged.first?.rule == .countryBlock)
        let block = try await database.query(
            "SELECT since, until, reason FROM sms.fraud_blocks WHERE scope = 'country' AND key = '+62'"
        ).single()
        #expect(try block.requiredString("reason").hasPrefix("anomaly: "))
        // Retention (sms.fraud_prune, as the fraud watch runs it after each evaluation): the per-minute
        // counters keep 62 minutes at most.
        #expect(try await db.run(PruneFraudState(settings: settings, now: later)) > 0)
        let oldest = try await database.query("SELECT extract(epoch FROM min(minute))::float8 AS m FROM sms.fraud_counts")
            .single()
            .requiredDouble("m")
        #expect(oldest >= later - 62 * 60 - 60, "counters older than 62 minutes are pruned")
    }
}
