import AsyncHTTPClient
import NIOCore

/// At start-up, checks that the GenAuth host answers HTTP at all (any status will do), so a wrong
/// host or a dead network fails the start with exit 69 instead of burning jobs' attempts.
public enum GenAuthProbe {
    public static func check(_ config: DispatcherConfig) async throws {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        var request = HTTPClientRequest(url: config.genauthHost)
        request.method = .GET
        do {
            let response = try await client.execute(request, timeout: .seconds(Int64(max(1, config.requestTimeout))))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw StartupError(code: .apiUnavailable, message: "GenAuth host \(config.genauthHost) does not answer: \(error)")
        }
    }
}
