import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Management-token mode: fetches a token with `POST /api/v3/get-management-token`
/// `{accessKeyId, accessKeySecret}`, caches it until shortly before `expires_in` runs out, and refetches
/// once on request after a 401. Concurrent callers share one fetch.
final class ManagementTokenProvider: Sendable {
    private struct Cached {
        var token: String?
        var validUntil = ContinuousClock.now
        var fetch: Task<String, any Error>?
    }

    private let pool: GenAuthConnectionPool
    private let head: HTTPRequestHead
    private let body: ByteBuffer
    private let timeout: TimeAmount
    private let cached = Mutex(Cached())

    init(pool: GenAuthConnectionPool, accessKeyID: String, accessKeySecret: String, timeout: TimeAmount) throws {
        self.pool = pool
        self.head = try pool.head(.POST, path: "/api/v3/get-management-token",
                              headers: ["content-type": "application/json", "accept": "application/json"])
        let payload = ["accessKeyId": accessKeyID, "accessKeySecret": accessKeySecret]
        self.body = ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: payload)) ?? Data())
        self.timeout = timeout
    }

    private struct Answer: Decodable {
        struct TokenData: Decodable {
            let access_token: String
            let expires_in: Double
        }
        let statusCode: Int
        let message: String?
        let data: TokenData?
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// A valid token, fetched if none is cached.
    func token() async throws -> String {
        let task: Task<String, any Error> = cached.withLock { state in
            if let token = state.token, ContinuousClock.now < state.validUntil {
                return Task { token }
            }
            if let running = state.fetch { return running }
            let running = Task { try await self.fetch() }
            state.fetch = running
            return running
        }
        return try await task.value
    }

    /// How long a token is used: `expires_in` less a tenth of it (at most a minute), so it is refreshed
    /// before it runs out. Whatever GenAuth sends (negative, NaN, infinite, 1e300) gives a duration
    /// between zero (used for this call, fetched again next time) and a day: never a trap.
    static func validity(expiresIn: Double) -> Duration {
        guard expiresIn.isFinite, expiresIn > 0 else { return .zero }
        let lifetime = min(expiresIn, 86_400)
        let margin = min(60, lifetime / 10)
        return .milliseconds(Int64((lifetime - margin) * 1000))
    }

    /// Drops `token` (GenAuth answered 401 to it) so the next `token()` fetches a new one.
    func invalidate(_ token: String) {
        cached.withLock { state in
            if state.token == token { state.token = nil }
        }
    }

    private func fetch() async throws -> String {
        defer { cached.withLock { $0.fetch = nil } }
        let response = try await pool.execute(head: head, body: body, timeout: timeout).get()
        guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(response.body.readableBytesView)),
              answer.statusCode == 200, let data = answer.data
        else {
            throw Failure(description: "get-management-token answered HTTP \(response.status): \(String(buffer: response.body).prefix(200))")
        }
        // It goes into a header as it is; one that could split the request is GenAuth's fault, not sent.
        guard GenAuthConnectionPool.isSafeHeader(name: "authorization", value: "Bearer \(data.access_token)") else {
            throw Failure(description: "get-management-token answered a token with characters a header cannot carry")
        }
        let validity = Self.validity(expiresIn: data.expires_in)
        cached.withLock { state in
            state.token = data.access_token
            state.validUntil = .now + validity
        }
        return data.access_token
    }
}
