/// One API call, as recorded on the job and in `sms.attempts`.
package struct CallRecord: Sendable, Equatable {
    package var httpStatus: Int?
    package var statusCode: Int?
    package var apiCode: Int?
    package var message: String?
    package var requestID: String?
    /// By this host's monotonic clock: the write-back turns them into database times ("so long ago"),
    /// so a host clock off by minutes changes no time on a row.
    package var startedAt: ContinuousClock.Instant
    package var finishedAt: ContinuousClock.Instant

    package init(
        httpStatus: Int? = nil, statusCode: Int? = nil, apiCode: Int? = nil, message: String? = nil,
        requestID: String? = nil, startedAt: ContinuousClock.Instant, finishedAt: ContinuousClock.Instant
    ) {
        self.httpStatus = httpStatus
        self.statusCode = statusCode
        self.apiCode = apiCode
        self.message = message
        self.requestID = requestID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}
