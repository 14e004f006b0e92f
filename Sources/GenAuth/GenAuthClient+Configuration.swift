import Foundation

/// Which header family carries the app id: GenAuth's `x-genauth-*` or the older Authing brand's `x-authing-*`.
package enum HeaderFamily: String, Sendable, CaseIterable {
    case genauth, authing

    package var appIdHeader: String { "x-\(rawValue)-app-id" }
}

extension GenAuthClient {
    /// Everything the client needs to reach one GenAuth app; the daemon's configuration fills it in
    /// from `genauth.*` (and `concurrency` for the connections).
    package struct Configuration: Sendable, Equatable {
        /// The app host base URL, `http(s)://host[:port][/prefix]`.
        package var host: String
        package var appID: String
        package var headerFamily: HeaderFamily
        /// How long one call may take, from being handed to the client (GenAuth's SDKs use 10 s).
        package var timeout: Duration
        /// Connections kept open: as many as calls in flight.
        package var maximumConnections: Int
        /// Management-token mode: send-sms carries `authorization: Bearer <token>` fetched with these.
        package var accessKey: AccessKey?

        package struct AccessKey: Sendable, Equatable {
            package var id: String
            package var secret: String
            package init(id: String, secret: String) {
                self.id = id
                self.secret = secret
            }
        }

        /// Sent as `user-agent`: the daemon names itself and its version.
        package var userAgent: String

        package init(
            host: String = "", appID: String = "", headerFamily: HeaderFamily = .genauth,
            timeout: Duration = .seconds(10), maximumConnections: Int = 64, accessKey: AccessKey? = nil,
            userAgent: String = "sms-dispatcher"
        ) {
            self.userAgent = userAgent
            self.host = host
            self.appID = appID
            self.headerFamily = headerFamily
            self.timeout = timeout
            self.maximumConnections = maximumConnections
            self.accessKey = accessKey
        }

        /// Opening a connection waits at most this long (within the call's own timeout).
        var connectTimeout: Duration { min(.seconds(5), timeout) }

        /// Which setting is wrong, and how.
        package struct Problem: Error, Sendable, Equatable {
            package enum Field: Sendable, Equatable { case host, appID }
            package let field: Field
            package let message: String
        }

        /// Checks what the send path needs: a host the client can connect to and an app id a header can
        /// carry. The same parser as the connections', so what passes here is what they can reach.
        package func validate() throws(Problem) {
            guard !host.isEmpty else { throw Problem(field: .host, message: "is required") }
            guard URL(string: host)?.host != nil, (try? GenAuthEndpoint(url: host)) != nil else {
                throw Problem(
                    field: .host,
                    message:
                        "must be an http:// or https:// URL (scheme://host[:port][/path], no user info, query or fragment), not \"\(GenAuthEndpoint.shown(host))\""
                )
            }
            guard !appID.isEmpty else { throw Problem(field: .appID, message: "is required") }
            guard GenAuthEndpoint.isSafeHeader(name: headerFamily.appIdHeader, value: appID) else {
                throw Problem(
                    field: .appID,
                    message:
                        "contains a control character (such as a line break), which an HTTP header cannot carry")
            }
        }
    }
}
