import Foundation
import GenAuth
import PostgresClient
import SMSModel
import Synchronization
import Testing
import SMSTestSupport

@testable import SMSEngine

/// The engine in this process (not the executable), for what only a caller of `Dispatcher.run()` can do.
@Suite("Dispatcher in process", .serialized)
struct DispatcherTests {
    /// Another service of the ServiceGroup failing cancels the dispatcher: it must stop (every task of
    /// it, the claim loop included) and leave nothing running; what it held is rescued by its lease.
    @Test("a cancelled dispatcher stops at once, claim loop included; its jobs end on their rows")
    func cancellationStopsEverything() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let sandbox = try await SandboxProcess.start(["--latency-ms", "20"])
        defer { Task { await sandbox.stop() } }
        var configuration = Dispatcher.Configuration()
        configuration.databaseURL = database.url
        configuration.genauth = GenAuthClient.Configuration(host: sandbox.baseURL, appID: "app", timeout: .seconds(5))
        configuration.claims.concurrency = 8
        configuration.claims.lease = .seconds(3)
        configuration.claims.pollInterval = .milliseconds(200)
        configuration.heartbeat.interval = .seconds(1)
        configuration.rescuer.interval = .milliseconds(500)
        configuration.admission.rateLimit = 0
        let dispatcher = try Dispatcher(
            configuration: configuration, logger: quietLogger,
            identity: WorkerIdentity(id: "in-process", host: "h", pid: 1))
        try await database.query(
            """
            INSERT INTO sms.jobs (channel, phone_number)
            SELECT 'CHANNEL_LOGIN', '137' || lpad(g::text, 8, '0') FROM generate_series(1, 300) g
            """)
        let running = Task { try await dispatcher.run() }
        let someSent = try await eventually(timeout: .seconds(30)) {
            (try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'sent'").first?.requiredInt("n") ?? 0)
                >= 20
        }
        #expect(someSent)
        running.cancel()
        // It returns, and promptly: calls in flight end within their timeout (5 s). Waited for with a
        // bound, so a dispatcher that hangs fails the test instead of hanging it.
        let returned = Atomic(false)
        Task {
            _ = try? await running.value
            returned.store(true, ordering: .relaxed)
        }
        let stoppedInTime = await eventually(timeout: .seconds(10)) { returned.load(ordering: .relaxed) }
        #expect(stoppedInTime, "the dispatcher did not return within 10 s of its cancellation")
        guard stoppedInTime else { return }
        // Nothing of it keeps claiming: the counts stand still once its leases have run out and the
        // rescue (here by SQL) has put back what it held.
        try await Task.sleep(for: .seconds(4))
        _ = try await database.query("SELECT * FROM sms.rescue_expired_leases('at-least-once')")
        let before = try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'running'").first?
            .requiredInt("n")
        #expect(before == 0, "no job stays running after its holder stopped")
        try await Task.sleep(for: .seconds(1))
        let after = try await database.query(
            "SELECT count(*) FILTER (WHERE state = 'sent')::int AS sent, count(*) FILTER (WHERE state = 'running')::int AS running FROM sms.jobs"
        ).first
        let runningAfter = try after?.requiredInt("running")
        #expect(runningAfter == 0)
        let sentNow = try after?.requiredInt("sent") ?? 0
        try await Task.sleep(for: .seconds(1))
        let sentLater = try await database.query("SELECT count(*)::int AS n FROM sms.jobs WHERE state = 'sent'").first?
            .requiredInt("n")
        #expect(sentLater == sentNow, "nothing sends after the cancellation")
    }
}
