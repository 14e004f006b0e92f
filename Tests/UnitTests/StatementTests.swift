import Foundation
import PostgresClient
import SMSJobStore
import Testing

@testable import SMSModel

/// What the compiler cannot check: that each statement's bindings line up with its SQL's `$1…$n`.
@Suite("Statements")
struct StatementTests {
    static let claimed = ClaimedJob(
        id: 41, leaseToken: 9, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000",
        phoneCountryCode: nil, attempts: 0, maxAttempts: 5)
    static let job = ValidJob(
        claimed: claimed, channel: .login,
        phone: ValidatedPhone(number: "13800138000", countryCode: nil), rule: ChannelRule())
    static let worker = WorkerIdentity(id: "w", instance: "0123456789abcdef", host: "h", pid: 1)

    /// The highest `$n` in the SQL: how many parameters the server expects.
    func placeholders(_ sql: String) -> Int {
        var highest = 0
        // Outside `--` comments (CompleteJobs.sql lists its parameters in one).
        let code = sql.split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in line.range(of: "--").map { line[..<$0.lowerBound] } ?? line }
            .joined(separator: "\n")
        var rest = Substring(code)
        while let dollar = rest.firstIndex(of: "$") {
            rest = rest[rest.index(after: dollar)...]
            let digits = rest.prefix(while: \.isNumber)
            highest = max(highest, Int(digits) ?? 0)
        }
        return highest
    }

    @Test("every statement binds exactly the parameters its SQL names")
    func bindingsMatchPlaceholders() {
        let now = ContinuousClock.now
        let call = CallRecord(httpStatus: 200, statusCode: 200, message: "ok", requestID: "r", startedAt: now, finishedAt: now)
        let statements: [any Statement] = [
            ClaimJobs(worker: "w", limit: 64, lease: .seconds(30)),
            ReserveSends(jobs: [Self.job], window: .seconds(60), hourCap: 5, dayCap: 10, rate: 270),
            CompleteJobs(
                worker: "w", outcomes: [JobOutcome(job: Self.job.lease, state: .sent, message: "", call: call)],
                throttleWindow: .seconds(60)),
            WorkerHeartbeat(worker: Self.worker, inFlight: 3, counters: WorkerCounters()),
            ExtendLeases(held: [Self.job.lease], lease: .seconds(30)),
            CountLiveWorkers(worker: Self.worker, staleAfter: .seconds(15)),
            RescueExpiredLeases(policy: .atLeastOnce),
            PurgeFinished(olderThan: .seconds(86_400), batch: 1000),
            ForgetStaleRows(),
            ForgetKeyLocks(),
            RequeueJobs(states: [.failed], channel: .login, ids: [1], finishedWithin: .seconds(60), limit: 10, dryRun: true),
            CancelJobs(ids: [1, 2]),
            CountDueJobs(),
            UnregisterWorker(worker: Self.worker),
            NotifyJobsAvailable(),
            EnqueueJob(
                channel: .login, phoneNumber: "13800138000", countryCode: nil, priority: 1, idempotencyKey: "k",
                expiresIn: .seconds(600)),
            QueueStats(),
            ListWorkers(),
            PublishChannelSettings(rules: SendingRules()),
            ListPauses(),
            PauseChannels(scope: .channel(.login), reason: "r", duration: .seconds(60)),
            ResumeChannels(scope: .all),
            ExpirePausedJobs(limit: 100),
            JobResult(id: 7),
            DecideFraud(
                requests: [.init(phoneKey: "+86 13800138000", clientIP: "203.0.113.9", userRef: "u")],
                settings: FraudSettings(), now: 1_800_000_000),
            RecordVerifications(phoneKeys: ["+86 13800138000"], userRefs: ["u"]),
            EvaluateFraud(settings: FraudSettings()),
            PruneFraudState(settings: FraudSettings(), now: 1_800_000_000),
            MarkVerified(jobID: 7),
            ListFraudBlocks(),
            ListFraudAllowed(),
            FraudDecisionCounts(),
            UnblockFraud(key: "+62"),
            AllowFraudPrefix(prefix: "+4470090", note: nil),
            DisallowFraudPrefix(prefix: "+4470090"),
        ]
        for statement in statements {
            let sql = type(of: statement).sql
            #expect(statement.bindings.count == placeholders(sql), "\(type(of: statement))")
        }
    }

    @Test("the write-back's arrays: one element per outcome, in the SQL's order, times as seconds ago")
    func completeJobsBindings() {
        let now = ContinuousClock.now
        let call = CallRecord(
            httpStatus: 503, statusCode: nil, message: "busy", startedAt: now - .seconds(3),
            finishedAt: now - .seconds(1))
        let retry = JobOutcome(
            job: JobLease(id: 1, token: 11), state: .pending, message: "busy", call: call,
            retryIn: .seconds(4), uncertain: true)
        let deferred = JobOutcome(
            job: JobLease(id: 2, token: 12), state: .pending, message: "deferred",
            deferredUntil: 1_800_000_000.5)
        let bindings = CompleteJobs(worker: "w", outcomes: [retry, deferred], throttleWindow: .seconds(60), now: now).bindings
        #expect(bindings[0] == "w")
        #expect(bindings[1] == "{1,2}" && bindings[2] == "{11,12}")
        #expect(bindings[3] == #"{"pending","pending"}"#)
        #expect(bindings[4] == "{1,0}", "called")
        #expect(bindings[5] == "{503,NULL}" && bindings[6] == "{NULL,NULL}")
        #expect(bindings[10] == "{4.0,0.0}", "retry_in")
        #expect(bindings[11] == "{3.0,NULL}" && bindings[12] == "{1.0,NULL}", "started and finished, seconds ago")
        #expect(bindings[13] == #"{"retry",NULL}"#, "the attempt's outcome")
        #expect(bindings[15] == "{NULL,1800000000.5}", "deferred_until")
        #expect(bindings[17] == "{1,0}", "uncertain")
        #expect(bindings[18] == "{NULL,NULL}", "until when GenAuth can prove a call that may have gone out unseen")
        #expect(bindings[19] == "60.0" && bindings[20] == "true" && bindings.count == 21)
    }

    @Test func arrayLiterals() {
        #expect(PostgresArray.literal([1, nil, -3] as [Int?]) == "{1,NULL,-3}")
        #expect(PostgresArray.literal([0.5, nil] as [Double?]) == "{0.5,NULL}")
        #expect(PostgresArray.literal([] as [Int]) == "{}")
        #expect(
            PostgresArray.literal([#"a "quoted", {braced}"#, nil, "back\\slash", "NULL", "nul\u{0}byte"] as [String?])
                == #"{"a \"quoted\", {braced}",NULL,"back\\slash","NULL","nulbyte"}"#)
    }
}

extension StatementTests {
    @Test("the claim's rows become claimed jobs with their claim tokens")
    func claimDecoding() throws {
        let rows = PostgresRows(
            columns: [
                "id", "lease_token", "channel", "phone_number", "phone_country_code", "phone_key",
                "attempts", "max_attempts", "created_epoch", "expires_epoch", "now_epoch",
                "started_epoch", "newer_job", "uncertain", "proof_epoch",
            ],
            values: [
                [
                    "7", "31", "CHANNEL_LOGIN", "13800138000", nil, "+86 13800138000", "1", "5",
                    "1800000000.25", nil, "1800000001.5", "1800000001.25", "9", "t", "1800000050.5",
                ]
            ])
        let job = try #require(try ClaimJobs(worker: "w", limit: 1, lease: .seconds(30)).decode(rows).first)
        #expect(job.lease == JobLease(id: 7, token: 31) && job.phoneCountryCode == nil && job.attempts == 1)
        #expect(job.createdAt == 1_800_000_000.25 && job.now == 1_800_000_001.5 && job.expiresAt == nil)
        #expect(job.newerJob == 9 && job.uncertain && job.proofUntil == 1_800_000_050.5)
        // Two mappings onto the database's clock: from the claim's send to its end (never behind), from
        // its transaction's start to its answer (never ahead).
        #expect(job.databaseTime(of: job.claimedAt) == 1_800_000_001.5)
        #expect(job.earliestDatabaseTime(of: job.answeredAt) == 1_800_000_001.25)
    }

    @Test("the throttle's verdicts, an unknown one refused on the row rather than left waiting")
    func reservationDecoding() throws {
        let rows = PostgresRows(
            columns: ["r_job_id", "r_verdict", "until", "r_detail", "r_slot", "r_rule"],
            values: [
                ["1", "granted", nil, nil, "0.0123456", nil],
                ["2", "deferred", "1800000060", nil, nil, nil],
                ["3", "capped", nil, "per-phone cap reached: 5 SMS in the last hour", nil, nil],
                ["4", "lost", nil, nil, nil, nil],
                ["5", "surprise", nil, nil, nil, nil],
                ["6", "fraud", nil, "fraud guard: prefix_block: prefix +44 770090: anomaly", nil, "prefix_block"],
                [
                    "7", "granted", nil, "fraud guard (monitor mode, sent): per_user_hour: user_ref u had 10 SMS", "0",
                    "per_user_hour",
                ],
                ["8", "deferred", "1800000000.5", "busy: another session holds this job or its phone for a moment", nil, nil],
            ])
        let answer = try ReserveSends(jobs: [], window: .seconds(60), hourCap: 0, dayCap: 0, rate: 0).decode(rows)
        let verdicts = answer.verdicts
        #expect(verdicts[1] == .granted(slot: .microseconds(12346)))
        #expect(verdicts[2] == .deferred(until: 1_800_000_060))
        #expect(verdicts[3] == .capped("per-phone cap reached: 5 SMS in the last hour"))
        #expect(verdicts[4] == .lost)
        #expect(verdicts[8] == .busy(retryIn: .milliseconds(500)), "a held key delays its job alone")
        guard case .capped(let why) = verdicts[5] else {
            Issue.record("an unknown verdict must end the job, not leave it waiting")
            return
        }
        #expect(why.contains("unknown verdict surprise"))
        #expect(verdicts[6] == .fraud(rule: .prefixBlock, message: "fraud guard: prefix_block: prefix +44 770090: anomaly"))
        // Monitor mode: granted all the same, and flagged with the rule that would have stopped it.
        #expect(verdicts[7] == .granted(slot: .zero))
        #expect(
            answer.flagged == [
                7: FraudFlag(
                    rule: .perUserHour,
                    message: "fraud guard (monitor mode, sent): per_user_hour: user_ref u had 10 SMS")
            ])
    }

    @Test("the fraud guard's decisions decode in request order; an unknown decision is refused")
    func fraudDecisionDecoding() throws {
        let statement = DecideFraud(requests: [], settings: FraudSettings())
        let decided = try statement.decode(
            PostgresRows(
                columns: ["r_index", "r_decision", "r_rule", "r_detail"],
                values: [
                    ["1", "pass", nil, nil], ["2", "blocked", "per_ip_hour", "fraud guard: ..."], ["3", "allowed", nil, nil],
                ]))
        #expect(decided.map(\.decision) == [.pass, .blocked, .allowed] && decided.map(\.rule) == [nil, .perIPHour, nil])
        #expect(throws: PostgresError.self) {
            try statement.decode(
                PostgresRows(
                    columns: ["r_index", "r_decision", "r_rule", "r_detail"],
                    values: [["1", "maybe", nil, nil]]))
        }
        let blocks = try ListFraudBlocks().decode(
            PostgresRows(
                columns: ["scope", "key", "since", "until", "reason", "cleared_by"],
                values: [["country", "+62", "1800000000", "1800001800", "anomaly: ...", nil]]))
        #expect(
            blocks == [
                FraudBlock(scope: .country, key: "+62", since: 1_800_000_000, until: 1_800_001_800, reason: "anomaly: ...")
            ])
        #expect(throws: PostgresError.self) {
            try ListFraudBlocks().decode(
                PostgresRows(
                    columns: ["scope", "key", "since", "until", "reason", "cleared_by"],
                    values: [["planet", "x", "1", "2", "r", nil]]))
        }
    }

    @Test("cancel says per id what happened; rescue refuses a state it does not know")
    func operatorResults() throws {
        let cancelled = try CancelJobs(ids: [1, 2, 3, 4]).decode(
            PostgresRows(
                columns: ["id", "cancelled", "state"],
                values: [
                    ["1", "t", "cancelled"], ["2", "f", nil], ["3", "f", "running"], ["4", "f", "sent"],
                ]))
        #expect(cancelled.map(\.result) == [.cancelled, .noSuchJob, .beingSent, .alreadyFinished(.sent)])
        #expect(
            cancelled.map(\.result.description) == [
                "cancelled", "no such job", "not cancelled: being sent right now",
                "not cancelled: already sent",
            ])
        let rescue = RescueExpiredLeases(policy: .atMostOnce)
        let rescued = try rescue.decode(PostgresRows(columns: ["r_job_id", "r_state"], values: [["8", "failed"]]))
        #expect(rescued.first?.id == 8 && rescued.first?.state == .failed)
        #expect(throws: PostgresError.self) {
            try rescue.decode(PostgresRows(columns: ["r_job_id", "r_state"], values: [["8", "limbo"]]))
        }
    }

    @Test("pauses: `*` is every channel, a channel name one; an unknown channel is refused, not ignored")
    func pausesDecode() throws {
        let rows = PostgresRows(
            columns: ["channel", "paused_by", "reason", "since", "until"],
            values: [
                ["*", "ops", "incident 12", "1700000000", nil],
                ["CHANNEL_LOGIN", "alice", nil, "1700000100", "1700003700"],
            ])
        let pauses = try ListPauses().decode(rows)
        #expect(pauses.all.map(\.scope) == [.all, .channel(.login)])
        #expect(pauses.all[0].until == nil && pauses.all[1].until == 1_700_003_700)
        #expect(pauses.pause(of: .register)?.scope == .all, "the pause of every channel holds each one")
        let bad = PostgresRows(
            columns: ["channel", "paused_by", "reason", "since", "until"], values: [["CHANNEL_SPAM", "x", nil, "1", nil]])
        #expect(throws: PostgresError.self) { try ListPauses().decode(bad) }
        #expect(
            PauseChannels(scope: .all, reason: nil, duration: nil).bindings == [nil, nil, nil],
            "all channels is sms.pause's NULL channel")
        #expect(
            PauseChannels(scope: .channel(.verifyMFA), reason: "r", duration: .seconds(90)).bindings
                == ["CHANNEL_VERIFY_MFA", "r", "90.0"])
    }

    @Test("a job's result: state and GenAuth's answer; no row is nil; an unknown state is refused")
    func jobResultDecode() throws {
        let columns = ["state", "status_code", "api_code", "message", "request_id", "http_status", "attempts", "run_in"]
        let sent = try JobResult(id: 5).decode(
            PostgresRows(
                columns: columns,
                values: [
                    ["sent", "200", nil, "ok", "req-1", "200", "1", "-3.5"]
                ]))
        #expect(
            sent
                == JobResult.Row(
                    id: 5, state: .sent, statusCode: 200, message: "ok", requestID: "req-1",
                    httpStatus: 200, attempts: 1, runIn: -3.5))
        #expect(try JobResult(id: 5).decode(PostgresRows(columns: columns, values: [])) == nil)
        #expect(throws: PostgresError.self) {
            try JobResult(id: 5).decode(PostgresRows(columns: columns, values: [["done", nil, nil, nil, nil, nil, "0", "0"]]))
        }
    }
}
