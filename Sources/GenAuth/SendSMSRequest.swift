import NIOCore

/// One send-SMS request, as GenAuth's API takes it.
package struct SendSMSRequest: Sendable, Encodable, Equatable {
    package var channel: String
    package var phoneNumber: String
    /// Omitted for mainland China.
    package var phoneCountryCode: String?

    package init(channel: String, phoneNumber: String, phoneCountryCode: String?) {
        self.channel = channel
        self.phoneNumber = phoneNumber
        self.phoneCountryCode = phoneCountryCode
    }

    /// The JSON body, written straight into a buffer: the same bytes `JSONEncoder` would send up to key
    /// order and escaping style (checked by a test), at a fraction of its CPU per call.
    func jsonBody() -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(96)
        out.writeStaticString("{\"channel\":")
        Self.writeJSONString(channel, to: &out)
        out.writeStaticString(",\"phoneNumber\":")
        Self.writeJSONString(phoneNumber, to: &out)
        if let phoneCountryCode {
            out.writeStaticString(",\"phoneCountryCode\":")
            Self.writeJSONString(phoneCountryCode, to: &out)
        }
        out.writeStaticString("}")
        return out
    }

    /// A JSON string (RFC 8259 §7): quote, backslash and control characters escaped, all else as UTF-8.
    static func writeJSONString(_ value: String, to out: inout ByteBuffer) {
        out.writeInteger(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.writeInteger(UInt8(ascii: "\\"))
                out.writeInteger(byte)
            case 0..<0x20:
                let hex: StaticString = "0123456789abcdef"
                out.writeStaticString("\\u00")
                out.writeInteger(hex.utf8Start[Int(byte >> 4)])
                out.writeInteger(hex.utf8Start[Int(byte & 0x0f)])
            default:
                out.writeInteger(byte)
            }
        }
        out.writeInteger(UInt8(ascii: "\""))
    }
}
