import ArgumentParser
import Foundation
import PostgresClient
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Insert one job and print its id; with --wait, also its final state.",
        discussion: """
            Inserts through sms.enqueue (the producers' function). With --wait it prints, after the id, \
            the job's final state with GenAuth's statusCode, apiCode and message, and exits 0 when it \
            was sent, 1 when it ended unsent (failed, rejected, expired, superseded, cancelled), 75 \
            when --timeout passed first (the job goes on: it is not cancelled). While it waits, a \
            deferral or retry is reported on standard error.
            """)
    @OptionGroup var options: CommonOptions
    @Option(help: "One of: \(Channel.allCases.map(\.rawValue).joined(separator: ", ")).") var channel: String
    @Option(help: "National number, digits only.") var phone: String
    @Option(name: .customLong("country-code"), help: "+CC; omit for mainland China.") var countryCode: String?
    @Option(help: "Higher is sent first.") var priority: Int?
    @Option(name: .customLong("idempotency-key"), help: "A repeat with the same key returns the first job's id.")
    var idempotencyKey: String?
    @Option(name: .customLong("expires-in"), help: "Seconds from now after which it must not be sent.") var expiresIn: Double?
    @Option(name: .customLong("client-ip"), help: "The end user's IP address (for the fraud guard).") var clientIP: String?
    @Option(name: .customLong("user-ref"), help: "Your own account or session id (for the fraud guard).") var userRef: String?
    @Flag(help: "Wait for the job's final state and print it (exit 0 sent, 1 ended unsent, 75 timed out).") var wait = false
    @Option(help: "With --wait: seconds to wait at most (default 60).") var timeout: Double?

    /// sysexits.h EX_TEMPFAIL: the job did not finish in time; it may still.
    static let timedOut: Int32 = 75

    func validate() throws {
        guard Channel(rawValue: channel) != nil else {
            throw ValidationError("--channel must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let priority, !(Int(Int16.min)...Int(Int16.max)).contains(priority) {
            throw ValidationError("--priority must fit in a smallint")
        }
        if let expiresIn, !expiresIn.isFinite {
            throw ValidationError("--expires-in must be a number of seconds")
        }
        if let timeout {
            guard wait else { throw ValidationError("--timeout only applies with --wait") }
            guard timeout.isFinite, timeout > 0 else { throw ValidationError("--timeout must be a positive number of seconds") }
        }
    }

    func run() async throws {
        let job = EnqueueJob(
            channel: Channel(rawValue: channel) ?? .login, phoneNumber: phone, countryCode: countryCode,
            priority: priority, idempotencyKey: idempotencyKey,
            expiresIn: expiresIn.map { Duration.seconds(double: $0) }, clientIP: clientIP, userRef: userRef)
        guard wait else {
            let id = try await options.withDatabase("enqueue") { db, _ in try await db.run(job) }
            print(id)
            return
        }
        let limit = Duration.seconds(double: timeout ?? 60)
        let (config, _) = try await options.load(requireGenAuth: false)
        let db = try await options.connect(config)
        let id: Int64
        do {
            // LISTEN before the insert: the job's announcement cannot come before we listen.
            try await db.listen(NotificationChannel.jobEvents.rawValue)
            id = try await db.run(job)
        } catch let error as PostgresError where error.isConnectionProblem {
            await db.close()
            // The insert may have committed with its reply lost: not "unsent".
            fail(
                "enqueue --wait: the connection failed during the insert (\(error)); the job may exist: repeat with the same --idempotency-key to find it",
                code: Self.timedOut)
        } catch {
            await db.close()
            fail("enqueue failed: \(error)", code: 1)
        }
        // Unbuffered: a producer script reads the id while we wait.
        FileHandle.standardOutput.write(Data("\(id)\n".utf8))
        let end = await JobEvents.waitForEnd(
            of: id, on: db, reconnect: { try await options.connect(config, exitOnFailure: false) },
            timeout: limit
        ) { progress in
            FileHandle.standardError.write(
                Data(
                    "job \(id): \(progress.state.rawValue)\(progress.message.map { ": \($0)" } ?? "")\(progress.runIn > 0.5 ? String(format: " (next try in %.0f s)", progress.runIn) : "")\n"
                        .utf8))
        }
        let final: JobResult.Row
        switch end {
        case .finished(let row):
            final = row
        case .timedOut(let lastError):
            // EX_TEMPFAIL whatever kept us from the answer (time, or the database): the job goes on.
            print(
                "timed out after \(limit.seconds) s: the job is not finished yet (it goes on)\(lastError.map { "; last database error: \($0)" } ?? "")"
            )
            throw ExitCode(Self.timedOut)
        case .vanished:
            print("job \(id) no longer exists (deleted or purged before it finished): its outcome is unknown")
            throw ExitCode(Self.timedOut)
        }
        print(JobEvents.describe(final))
        if final.state != .sent { throw ExitCode(1) }
    }
}
