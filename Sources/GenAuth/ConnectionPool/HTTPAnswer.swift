import NIOCore
import NIOHTTP1

/// One HTTP answer, whole (GenAuth's are a few hundred bytes).
struct HTTPAnswer: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
}
