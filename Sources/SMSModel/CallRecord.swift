/// One API call, as recorded on the job and in `sms.attempts`.
public struct CallRecord: Sendable, Equatable {
    public var httpStatus: Int?
    public var statusCode: Int?
    public var apiCode: Int?
    public var message: String?
    public var requestID: String?
    /// By this host's monotonic clock: the write-back turns them into database times ("so long ago"),
    /// so a host clock off by minutes changes no time on a row.
    public var startedAt: ContinuousClock.Instant
    public var finishedAt: ContinuousClock.Instant

    public init(httpStatus: Int? = nil, statusCode: Int? = nil, apiCode: Int? = nil, message: String? = nil,
                requestID: String? = nil, startedAt: ContinuousClock.Instant, finishedAt: ContinuousClock.Instant) {
        self.httpStatus = httpStatus
        self.statusCode = statusCode
        self.apiCode = apiCode
        self.message = message
        self.requestID = requestID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}
