import NIOCore
import NIOPosix

/// At start-up, checks that the GenAuth host answers HTTP at all (any status will do), so a wrong
/// host or a dead network fails the start with exit 69 instead of burning jobs' attempts. Goes through
/// the same connection code (and TLS set-up) as the send path, so a pass means the send path can
/// reach it too.
package enum GenAuthProbe {
    /// Why the host does not answer.
    package struct Unreachable: Error, CustomStringConvertible {
        package let description: String
    }

    package static func check(_ config: GenAuthClient.Configuration) async throws(Unreachable) {
        let timeout = TimeAmount(max(.seconds(1), config.timeout))
        do {
            let pool = try GenAuthConnectionPool(
                endpoint: GenAuthEndpoint(url: config.host),
                eventLoop: MultiThreadedEventLoopGroup.singleton.next(), maximumConnections: 1,
                connectTimeout: .seconds(5))
            var head = try pool.head(.GET, path: "/")
            head.headers.add(name: "connection", value: "close")
            let answered: Result<HTTPAnswer, any Error>
            do {
                answered = .success(try await pool.execute(head: head, body: ByteBuffer(), timeout: timeout).get())
            } catch {
                answered = .failure(error)
            }
            await pool.shutdown()
            _ = try answered.get()
        } catch {
            throw Unreachable(description: "GenAuth host \(GenAuthEndpoint.shown(config.host)) does not answer: \(error)")
        }
    }
}
