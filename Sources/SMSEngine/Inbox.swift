import Synchronization

/// State shared behind a lock with one consumer that waits for it: producers on any thread `update`
/// it (which wakes the consumer if it waits), the consumer `take`s from it once it is ready. The claim
/// loop's events and the writer's queue are both one of these; hand-written because the standard
/// library's `AsyncStream` either buffers every element (one wake-up each) or drops them, and here
/// a burst must be one wake-up that loses nothing.
final class Inbox<State: Sendable>: Sendable {
    private struct Box: Sendable {
        var state: State
        var waiter: CheckedContinuation<Void, Never>? = nil
    }
    private let box: Mutex<Box>

    init(_ state: State) { box = Mutex(Box(state: state)) }

    /// Changes the state and wakes the consumer if it is waiting.
    @discardableResult
    func update<R: Sendable>(_ body: (inout State) -> R) -> R {
        let (result, waiter) = box.withLock { box in
            let result = body(&box.state)
            defer { box.waiter = nil }
            return (result, box.waiter)
        }
        waiter?.resume()
        return result
    }

    /// Reads or changes the state without waking anyone.
    func withState<R: Sendable>(_ body: (inout State) -> R) -> R { box.withLock { body(&$0.state) } }

    /// Waits until `ready` holds, then `take`s from the state under the same lock; nil if the task is
    /// cancelled first (as an `AsyncStream`'s iterator ends on cancellation).
    func take<R: Sendable>(when ready: (State) -> Bool, _ take: (inout State) -> R) async -> R? {
        while !Task.isCancelled {
            let taken = box.withLock { box -> R? in ready(box.state) ? take(&box.state) : nil }
            if let taken { return taken }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = box.withLock { box -> Bool in
                        // Checked under the lock the cancellation handler takes: either it sees this
                        // waiter, or this sees the cancellation.
                        if ready(box.state) || Task.isCancelled { return true }
                        box.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                box.withLock { box in
                    defer { box.waiter = nil }
                    return box.waiter
                }?.resume()
            }
        }
        return nil
    }
}
