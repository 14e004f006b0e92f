/// A test or bench could not set up what it needs (no cluster URL, no free port, a child that hangs).
package struct TestSetupError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
