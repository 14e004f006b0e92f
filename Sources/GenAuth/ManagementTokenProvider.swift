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
        self.head = try pool.head(
            .POST, path: "/api/v3/get-management-token",
            headers: ["content-type": "application/json", "accept": "application/json"])
        let payload = ["accessKeyId": accessKeyID, "accessKeySecret": accessKeySecret]
        self.body = ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: payload)) ?? Data())
        self.timeout = timeout
    }

    private struct Head: Decodable {
        let statusCode: Int
        let message: String?
    }

    private struct Answer: Decodable {
        struct TokenData: Decodable {
            let accessToken: String
            let expiresIn: Double

            enum CodingKeys: String, CodingKey {
                case accessToken = "access_token"
                case expiresIn = "expires_in"
            }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                accessToken = try container.decode(String.self, forKey: .accessToken)
                do {
                    expiresIn = try container.decode(Double.self, forKey: .expiresIn)
                } catch let error as DecodingError {
                    guard case .dataCorrupted = error else { throw error }  // missing, null, not a number
                    expiresIn = 0
                } catch {
                    // A JSON number beyond a Double (1e400; Foundation on Linux throws its own error type
                    // here): no lifetime we can trust, so the token is used once.
                    expiresIn = 0
                }
            }
        }
        let data: TokenData
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

    /// The token and `expires_in` of a get-management-token answer. Any JSON number is a lifetime
    /// (`validity` clamps it); a failure, or a token without a numeric `expires_in`, throws.
    static func read(_ body: Data, status: String) throws -> (token: String, expiresIn: Double) {
        guard let head = try? JSONDecoder().decode(Head.self, from: body), head.statusCode == 200 else {
            // GenAuth's statusCode and message only: a body of another shape may hold a token or echo a secret.
            let head = try? JSONDecoder().decode(Head.self, from: body)
            throw Failure(
                description: "get-management-token answered HTTP \(status)"
                    + (head.map { ": statusCode \($0.statusCode)\($0.message.map { ", \($0)" } ?? "")" }
                        ?? ", not a GenAuth answer"))
        }
        // The body is left out from here on: it may hold a live token.
        guard let answer = try? JSONDecoder().decode(Answer.self, from: body) else {
            throw Failure(
                description:
                    "get-management-token answered statusCode 200 without data.access_token (a string) and data.expires_in (a number)"
            )
        }
        return (answer.data.accessToken, answer.data.expiresIn)
    }

    private func fetch() async throws -> String {
        defer { cached.withLock { $0.fetch = nil } }
        let response = try await pool.execute(head: head, body: body, timeout: timeout).get()
        let (token, expiresIn) = try Self.read(Data(response.body.readableBytesView), status: "\(response.status)")
        // It goes into a header as it is; one that could split the request is GenAuth's fault, not sent.
        guard GenAuthConnectionPool.isSafeHeader(name: "authorization", value: "Bearer \(token)") else {
            throw Failure(description: "get-management-token answered a token with characters a header cannot carry")
        }
        let validity = Self.validity(expiresIn: expiresIn)
        cached.withLock { state in
            state.token = token
            state.validUntil = .now + validity
        }
        return token
    }
}
