import ArgumentParser
import Foundation
import GenAuthSandbox
import Logging

/// The fake GenAuth for tests, the demo and benchmarks. Serves on 127.0.0.1 only unless told otherwise.
@main
struct GenAuthSandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genauth-sandbox",
        abstract: "A faithful fake of GenAuth's send-SMS API, on loopback.",
        discussion: """
            Prints "genauth-sandbox listening on http://HOST:PORT" once ready.
            Endpoints: POST /api/v3/send-sms, POST /api/v3/get-management-token;
            GET /__sandbox/sends (what was accepted), POST /__sandbox/faults (change fault switches),
            POST /__sandbox/reset. Numbers 17K000N#### act scripted on their first N calls (N = 0:
            every call): K = 0 body 400 (always), 1 body 500, 2 HTTP 503, 3 HTTP 429, 4 hang, 5 body 601,
            6 accepted (recorded, window set) with an apiCode of 99999999999 and a 300-character
            requestId, 7 a body statusCode of 99999999999 (not accepted). See the README.
            --late-answer-ms N: the share --late-answer-rate of accepted sends is recorded first and
            answered N ms later ("GenAuth accepted, but answered after the client's timeout").
            --token-ttl is sent as expires_in as given (1e300, -5, 0.5 ...) to test clients.
            """)

    @Option(help: "Address to bind; keep it on loopback.") var host = "127.0.0.1"
    @Option(help: "Port to bind; 0 picks a free one.") var port = 0
    @Option(help: "Seconds between two SMS to one phone on one channel.") var window: Double = 60
    @Option(help: "Requests per second before real HTTP 429 (0: no limit).") var qps = 0
    @Option(name: .customLong("app-id"), help: "Require this app id.") var appID: String?
    @Flag(help: "Accept international numbers (country codes other than +86).") var international = false
    @Option(name: .customLong("access-key-id"), help: "Management-token mode: the access key id to accept.") var accessKeyID:
        String?
    @Option(name: .customLong("access-key-secret"), help: "Management-token mode: the access key secret to accept.")
    var accessKeySecret: String?
    @Option(name: .customLong("token-ttl"), help: "Seconds a management token lives (its expires_in; any finite number).")
    var tokenTTL: Double = 7200
    @Option(name: .customLong("latency-ms"), help: "Milliseconds added to every send-sms answer.") var latencyMs = 0
    @Option(name: .customLong("fail-503"), help: "Share of calls answered HTTP 503 (0...1).") var fail503: Double = 0
    @Option(name: .customLong("fail-429"), help: "Share of calls answered HTTP 429 with Retry-After (0...1).") var fail429:
        Double = 0
    @Option(name: .customLong("fail-timeout"), help: "Share of calls that hang (0...1).") var failTimeout: Double = 0
    @Option(name: .customLong("hang-seconds"), help: "How long a hanging call hangs.") var hangSeconds: Double = 30
    @Option(
        name: .customLong("late-answer-ms"), help: "Accept the SMS, then answer this many ms later (past a client's timeout).")
    var lateAnswerMs = 0
    @Option(name: .customLong("late-answer-rate"), help: "Share of accepted sends answered late (0...1).") var lateAnswerRate:
        Double = 1
    @Option(name: .customLong("log-level")) var logLevel = "warning"

    func validate() throws {
        for (name, rate) in [
            ("--fail-503", fail503), ("--fail-429", fail429), ("--fail-timeout", failTimeout),
            ("--late-answer-rate", lateAnswerRate),
        ]
        where !(0...1).contains(rate) {
            throw ValidationError("\(name) must be between 0 and 1")
        }
        guard lateAnswerMs >= 0 else { throw ValidationError("--late-answer-ms must be 0 or more") }
        // JSON has no infinity or NaN; any finite number (1e300 included) is sent as it is.
        guard tokenTTL.isFinite else { throw ValidationError("--token-ttl must be a finite number") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
    }

    func run() async throws {
        var options = SandboxOptions()
        options.host = host
        options.port = port
        options.windowSeconds = window
        options.qps = qps
        options.appID = appID
        options.international = international
        options.accessKeyID = accessKeyID
        options.accessKeySecret = accessKeySecret
        options.tokenTTL = tokenTTL
        options.faults.latencyMs = latencyMs
        options.faults.rate503 = fail503
        options.faults.rate429 = fail429
        options.faults.rateTimeout = failTimeout
        options.faults.hangSeconds = hangSeconds
        options.faults.lateAnswerMs = lateAnswerMs
        options.faults.lateAnswerRate = lateAnswerRate
        var logger = Logger(label: "genauth-sandbox")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let host = self.host
        try await GenAuthSandbox(options: options, logger: logger).run { port in
            // Written straight to the file descriptor: a test reads this line through a pipe.
            FileHandle.standardOutput.write(Data("genauth-sandbox listening on http://\(host):\(port)\n".utf8))
        }
    }
}
