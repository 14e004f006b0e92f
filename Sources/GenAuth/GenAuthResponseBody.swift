/// GenAuth's answer body: `{statusCode, message, apiCode?, requestId?}`.
package struct GenAuthResponseBody: Sendable, Codable, Equatable {
    package var statusCode: Int
    package var message: String?
    package var apiCode: Int?
    package var requestId: String?

    package init(statusCode: Int, message: String? = nil, apiCode: Int? = nil, requestId: String? = nil) {
        self.statusCode = statusCode
        self.message = message
        self.apiCode = apiCode
        self.requestId = requestId
    }
}
