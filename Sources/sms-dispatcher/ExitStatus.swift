import Foundation

/// sysexits.h codes the contract promises.
enum ExitStatus {
    static let usage: Int32 = 64
    static let unavailable: Int32 = 69
    static let config: Int32 = 78
}

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("sms-dispatcher: \(message)\n".utf8))
    exit(code)
}
