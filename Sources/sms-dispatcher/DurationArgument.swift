/// `30d`, `12h`, `15m`, `90s` or plain seconds.
func parseDuration(_ text: String) -> Double? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]
    if let last = text.last, let unit = units[last], let value = Double(text.dropLast()), value >= 0 {
        return value * unit
    }
    return Double(text).flatMap { $0 >= 0 ? $0 : nil }
}
