import Testing

@testable import GenAuth

@Suite("GenAuth endpoint")
struct GenAuthEndpointTests {
    @Test("host URLs: scheme, port, IPv6, path prefix; anything else is refused")
    func endpoints() throws {
        typealias Endpoint = GenAuthEndpoint
        let plain = try Endpoint(url: "http://example.com")
        #expect(
            plain.tls == false && plain.host == "example.com" && plain.port == 80 && plain.basePath == ""
                && plain.hostHeader == "example.com")
        let secure = try Endpoint(url: "HTTPS://app.genauth.ai:8443/tenant/")
        #expect(secure.tls && secure.host == "app.genauth.ai" && secure.port == 8443 && secure.basePath == "/tenant")
        #expect(secure.hostHeader == "app.genauth.ai:8443")
        let v6 = try Endpoint(url: "http://[::1]:9000")
        #expect(v6.host == "::1" && v6.port == 9000 && v6.hostHeader == "[::1]:9000")
        for bad in [
            "ftp://x", "example.com", "http://", "http://host:0", "http://host:99999", "http://[::1",
            "http://user:pw@host", "http://host?q=1", "http://host/path#frag", "http://ho st",
        ] {
            #expect(throws: (any Error).self, "\(bad)") { try Endpoint(url: bad) }
        }
    }

    @Test("header values that could split a request are refused once, when the head is built")
    func headers() {
        #expect(GenAuthEndpoint.isSafeHeader(name: "x-genauth-app-id", value: "app-123\ttabbed"))
        #expect(!GenAuthEndpoint.isSafeHeader(name: "x-genauth-app-id", value: "a\r\nx-evil: 1"))
        #expect(!GenAuthEndpoint.isSafeHeader(name: "bad header", value: "v"))
        #expect(!GenAuthEndpoint.isSafeHeader(name: "", value: "v"))
    }

    @Test("a host with user info is refused without showing the password")
    func userInfoIsNeverShown() {
        #expect(GenAuthEndpoint.shown("https://app:s3cret@example.genauth.ai/x") == "https://<redacted>@example.genauth.ai/x")
        #expect(GenAuthEndpoint.shown("https://example.genauth.ai/a@b") == "https://example.genauth.ai/a@b")
        let configuration = GenAuthClient.Configuration(host: "https://app:s3cret@example.genauth.ai", appID: "a")
        #expect {
            try configuration.validate()
        } throws: { error in
            guard let problem = error as? GenAuthClient.Configuration.Problem else { return false }
            return problem.field == .host && !problem.message.contains("s3cret")
        }
    }
}
