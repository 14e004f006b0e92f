/// Why a request got no answer.
struct HTTPCallError: Error, CustomStringConvertible {
    enum Code: Sendable, Equatable {
        /// No answer within the request's deadline (which includes waiting for and opening a connection).
        case timedOut
        /// The connection (TCP or TLS) could not be opened.
        case connectFailed
        /// The connection closed or failed before the answer was complete.
        case connectionLost
        /// The answer was not HTTP/1.1 we can read, or larger than we read.
        case badAnswer
        /// The pool was shut down.
        case shutDown
        /// The request itself cannot be sent (a header HTTP does not allow).
        case badRequest
    }

    let code: Code
    let description: String
    /// Whether any of the request had been handed to the connection: if so GenAuth may have acted on
    /// it; if not, it certainly did not.
    var requestWritten = false
}
