import Foundation
import GenAuth
import SMSModel
import Synchronization

extension Bench {
    /// The daemon's HTTP client on its own (same `GenAuthClient`, same concurrency, no database): what
    /// one call costs this process in CPU, i.e. the floor under the daemon's CPU per job.
    func clientFloor(calls: Int) async throws -> (rate: Double, microseconds: Double) {
        let sandbox = try await startSandbox(latencyMs: 0)
        defer { sandbox.process.terminate() }
        let client = try GenAuthClient(
            configuration: .init(
                host: sandbox.url, appID: "bench",
                maximumConnections: concurrency))
        let cpuBefore = cpuSeconds(getpid())
        let started = ContinuousClock.now
        let perTask = max(1, calls / concurrency)
        // As the daemon calls it: `start` with completions, `concurrency` calls in flight, each
        // completion starting that slot's next call.
        let remaining = Atomic(perTask * concurrency)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            @Sendable func call(_ worker: Int, _ index: Int) {
                let request = SendSMSRequest(
                    channel: "CHANNEL_LOGIN",
                    phoneNumber: "16" + String(format: "%09d", worker * perTask + index),
                    phoneCountryCode: nil)
                client.start([
                    GenAuthClient.PendingCall(request: request) { _ in
                        if remaining.subtract(1, ordering: .relaxed).newValue == 0 { done.resume() }
                        if index + 1 < perTask { call(worker, index + 1) }
                    }
                ])
            }
            for worker in 0..<concurrency { call(worker, 0) }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu = cpuSeconds(getpid()) - cpuBefore
        await client.shutdown()
        let made = perTask * concurrency
        return (Double(made) / seconds, cpu / Double(made) * 1e6)
    }
}
