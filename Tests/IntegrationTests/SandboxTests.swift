import Foundation
import GenAuth
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel
import Testing

/// The sandbox's own rules, checked over HTTP: it must be as strict as GenAuth or tests prove nothing.
@Suite("genauth-sandbox")
struct SandboxTests {
    @Test func followsGenAuthsShapesAndRules() async throws {
        let sandbox = try await SandboxProcess.start(["--window", "60"])
        defer { Task { await sandbox.stop() } }
        let url = sandbox.baseURL + "/api/v3/send-sms"
        let json = [("content-type", "application/json")]
        func decode(_ body: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        }

        let noAppID = try await HTTP.request(
            "POST", url, headers: json, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}"#)
        #expect(noAppID.status == 200)
        #expect(try decode(noAppID.body)["statusCode"] as? Int == 401)
        #expect(try decode(noAppID.body)["requestId"] as? String != nil)

        let headers = json + [("x-genauth-app-id", "app")]
        let badChannel = try await HTTP.request(
            "POST", url, headers: headers, body: #"{"channel":"CHANNEL_SPAM","phoneNumber":"13800138000"}"#)
        #expect(try decode(badChannel.body)["statusCode"] as? Int == 400)

        let ok = try await HTTP.request(
            "POST", url, headers: headers, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}"#)
        let okBody = try decode(ok.body)
        #expect(okBody["statusCode"] as? Int == 200)
        #expect((okBody["requestId"] as? String)?.isEmpty == false)

        // Same phone, same channel, inside the window: throttled. Another channel, or the Authing header: fine.
        let again = try await HTTP.request(
            "POST", url, headers: headers,
            body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86"}"#)
        #expect(try decode(again.body)["statusCode"] as? Int == 429)
        let other = try await HTTP.request(
            "POST", url, headers: json + [("x-authing-app-id", "app")],
            body: #"{"channel":"CHANNEL_REGISTER","phoneNumber":"13800138000"}"#)
        #expect(try decode(other.body)["statusCode"] as? Int == 200)

        let international = try await HTTP.request(
            "POST", url, headers: headers,
            body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"5551234567","phoneCountryCode":"+1"}"#)
        #expect(try decode(international.body)["statusCode"] as? Int == 400)

        // Scripted faults: 17 2 000 1 → HTTP 503 once, then normal.
        let fault = try await HTTP.request(
            "POST", url, headers: headers, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"17200011111"}"#)
        #expect(fault.status == 503)
        let recovered = try await HTTP.request(
            "POST", url, headers: headers, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"17200011111"}"#)
        #expect(try decode(recovered.body)["statusCode"] as? Int == 200)

        let token = try await HTTP.request(
            "POST", sandbox.baseURL + "/api/v3/get-management-token", headers: json,
            body: #"{"accessKeyId":"id","accessKeySecret":"secret"}"#)
        let data = try decode(token.body)["data"] as? [String: Any]
        #expect((data?["access_token"] as? String)?.isEmpty == false)
        #expect(data?["expires_in"] as? Int == 7200)

        let report = try await sandbox.report()
        #expect(report.accepted.count == 3)
        #expect(report.requests == 8)
    }

    @Test func qpsLimitIsRealHTTP429() async throws {
        let sandbox = try await SandboxProcess.start(["--qps", "5"])
        defer { Task { await sandbox.stop() } }
        var statuses: [Int] = []
        for index in 0..<12 {
            let result = try await HTTP.request(
                "POST", sandbox.baseURL + "/api/v3/send-sms",
                headers: [("content-type", "application/json"), ("x-genauth-app-id", "a")],
                body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"1380000\#(1000 + index)"}"#)
            statuses.append(result.status)
        }
        // However the 12 calls fall on wall-clock seconds (a loaded machine may spread them over
        // three), every call past the 5th within one second is a real HTTP 429.
        let report = try await sandbox.report()
        let over = report.perSecond.values.reduce(0) { $0 + max(0, $1 - 5) }
        #expect(statuses.filter { $0 == 429 }.count == over, "\(statuses) \(report.perSecond)")
        #expect(over >= 2 || report.perSecond.count >= 3, "12 calls in at most two seconds must exceed 5/s: \(report.perSecond)")
    }

    /// Issue 26: GenAuth's QPS limit is a real HTTP 429 that carries its body (statusCode 429) too; the
    /// fault switches for a dropped connection (before or after accepting) and a gateway's answer after
    /// accepting.
    @Test func qpsLimitDropsAndGateways() async throws {
        let sandbox = try await SandboxProcess.start(["--window", "60", "--qps", "1"])
        defer { Task { await sandbox.stop() } }
        let url = sandbox.baseURL + "/api/v3/send-sms"
        let headers = [("content-type", "application/json"), ("x-genauth-app-id", "app")]
        var limited: (status: Int, body: String)? = nil
        for n in 0..<5 where limited == nil {
            let answer = try await HTTP.request(
                "POST", url, headers: headers,
                body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"1380013800\#(n)"}"#)
            if answer.status == 429 { limited = answer }
        }
        let body = try #require(limited?.body)
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(decoded["statusCode"] as? Int == 429 && decoded["requestId"] != nil, "\(body)")

        let open = try await SandboxProcess.start(["--window", "60"])
        defer { Task { await open.stop() } }
        let openURL = open.baseURL + "/api/v3/send-sms"
        _ = try await HTTP.request("POST", open.baseURL + "/__sandbox/faults", body: #"{"rateDrop":1,"dropAfterAccept":true}"#)
        do {
            _ = try await HTTP.request(
                "POST", openURL, headers: headers, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13900139000"}"#)
            Issue.record("a dropped connection answered")
        } catch {}
        _ = try await HTTP.request("POST", open.baseURL + "/__sandbox/faults", body: #"{"rateGatewayAfterAccept":1}"#)
        let gateway = try await HTTP.request(
            "POST", openURL, headers: headers, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13900139001"}"#)
        #expect([502, 504].contains(gateway.status) && !gateway.body.contains("statusCode"))
        _ = try await HTTP.request("POST", open.baseURL + "/__sandbox/faults", body: #"{"rateDrop":1}"#)
        do {
            _ = try await HTTP.request(
                "POST", openURL, headers: headers, body: #"{"channel":"CHANNEL_LOGIN","phoneNumber":"13900139002"}"#)
            Issue.record("a dropped connection answered")
        } catch {}
        let accepted = try await open.report().accepted.map(\.phoneNumber).sorted()
        #expect(
            accepted == ["13900139000", "13900139001"],
            "dropped after accepting, and the gateway's, were sent; the plain drop was not")
    }
}
