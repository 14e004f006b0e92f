import Foundation
import Testing

@testable import GenAuth

@Suite("Management token")
struct ManagementTokenTests {
    @Test("any expires_in GenAuth sends gives a validity between zero and a day, refreshed before expiry")
    func validityNeverTraps() {
        #expect(ManagementTokenProvider.validity(expiresIn: 7200) == .seconds(7140))
        #expect(ManagementTokenProvider.validity(expiresIn: 100) == .seconds(90))
        for odd in [0, -5, 1e300, .infinity, -.infinity, .nan, .greatestFiniteMagnitude] as [Double] {
            let validity = ManagementTokenProvider.validity(expiresIn: odd)
            #expect(validity >= .zero && validity <= .seconds(86_400), "\(odd): \(validity)")
        }
        #expect(ManagementTokenProvider.validity(expiresIn: 1e300) == .seconds(86_340))
    }

    @Test("any JSON number is a lifetime; a token without a numeric expires_in fails the fetch without echoing it")
    func answerReading() throws {
        func answer(_ expiresIn: String) -> Data {
            Data(#"{"statusCode":200,"message":"","data":{"access_token":"tok-secret","expires_in":\#(expiresIn)}}"#.utf8)
        }
        for (text, expected) in [
            ("7200", 7200), ("1e300", 1e300), ("-5", -5), ("99999999999999999999999999", 1e26),
            ("1e400", 0), ("-1e400", 0),
        ] as [(String, Double)] {
            let read = try ManagementTokenProvider.read(answer(text), status: "200 OK")
            #expect(read.token == "tok-secret")
            #expect(read.expiresIn == expected, "\(text)")
            let validity = ManagementTokenProvider.validity(expiresIn: read.expiresIn)
            #expect(validity >= .zero && validity <= .seconds(86_400), "\(text)")
        }
        for text in [#""7200""#, "null", "{}"] {
            do {
                _ = try ManagementTokenProvider.read(answer(text), status: "200 OK")
                Issue.record("expires_in \(text) was accepted")
            } catch {
                #expect("\(error)".contains("expires_in") && !"\(error)".contains("tok-secret"), "\(error)")
            }
        }
        let missing = Data(#"{"statusCode":200,"data":{"access_token":"tok-secret"}}"#.utf8)
        #expect(throws: (any Error).self) { try ManagementTokenProvider.read(missing, status: "200 OK") }
        let refused = Data(#"{"statusCode":401,"apiCode":1401,"message":"wrong key"}"#.utf8)
        do {
            _ = try ManagementTokenProvider.read(refused, status: "200 OK")
            Issue.record("statusCode 401 was accepted")
        } catch {
            #expect("\(error)".contains("wrong key"), "\(error)")
        }
    }
}
