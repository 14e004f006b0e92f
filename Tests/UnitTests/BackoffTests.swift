import Foundation
import SMSModel
import Testing

@Suite("Retry backoff")
struct BackoffTests {
    @Test func growsExponentiallyWithinJitterBounds() {
        let backoff = Backoff(base: .seconds(2), maximum: .seconds(300))
        for attempt in 1...6 {
            let ceiling = Duration.seconds(double: min(300, 2 * pow(2, Double(attempt - 1))))
            #expect(backoff.delay(afterAttempt: attempt, random: 0) == ceiling / 2)
            #expect(backoff.delay(afterAttempt: attempt, random: 1) == ceiling)
            for _ in 0..<50 {
                let delay = backoff.delay(afterAttempt: attempt)
                #expect(delay >= ceiling / 2 && delay <= ceiling)
            }
        }
    }

    @Test func capped() {
        let backoff = Backoff(base: .seconds(2), maximum: .seconds(30))
        #expect(backoff.delay(afterAttempt: 40, random: 1) == .seconds(30))
        #expect(backoff.delay(afterAttempt: 1000, random: 0) == .seconds(15))
    }

    @Test func honoursLongerRetryAfter() {
        let backoff = Backoff(base: .seconds(2), maximum: .seconds(300))
        #expect(backoff.delay(afterAttempt: 1, retryAfter: .seconds(20), random: 0) == .seconds(20))
        #expect(backoff.delay(afterAttempt: 1, retryAfter: .milliseconds(100), random: 0) == .seconds(1))
        #expect(backoff.delay(afterAttempt: 1, retryAfter: .seconds(1_000), random: 0) == .seconds(1_000))
        #expect(backoff.delay(afterAttempt: 1, retryAfter: .seconds(100_000), random: 0) == .seconds(3_600))
    }
}
