/// Why a running dispatcher stopped without being asked to. A struct with a `Code`, as
/// swift-service-lifecycle's errors are.
package struct DispatcherError: Error, CustomStringConvertible {
    package struct Code: Hashable, Sendable {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// One of its services ended or failed on its own: the daemon is no longer whole.
        package static let serviceStopped = Code("serviceStopped")
        /// One of its services threw (the group stopped the others first).
        package static let serviceFailed = Code("serviceFailed")
    }
    package let code: Code
    package let message: String
    package init(code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    package var description: String { message }
}
