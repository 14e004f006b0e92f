/// GenAuth's answer body: `{statusCode, message, apiCode?, requestId?}`.
public struct GenAuthResponseBody: Sendable, Codable, Equatable {
    public var statusCode: Int
    public var message: String?
    public var apiCode: Int?
    public var requestId: String?

    public init(statusCode: Int, message: String? = nil, apiCode: Int? = nil, requestId: String? = nil) {
        self.statusCode = statusCode
        self.message = message
        self.apiCode = apiCode
        self.requestId = requestId
    }
}
