import SMSModel
import Synchronization

/// The jobs this process holds, each with the claim token of its claim: from the claim until its
/// outcome is written (or fenced out, or the throttle says the lease passed on). The heartbeat extends
/// exactly these leases, so a job this process does not hold (its predecessor's under the same worker
/// id, or one it has let go of) runs out its lease and is rescued.
final class LeaseBook: Sendable {
    private let leases = Mutex<[Int64: Int64]>([:])

    func hold<S: Sequence>(_ claimed: S) where S.Element == JobLease {
        leases.withLock { book in
            for lease in claimed { book[lease.id] = lease.token }
        }
    }

    /// Lets go of a job, if it is still held under that claim (a later claim of the same job stays).
    func release(_ lease: JobLease) {
        leases.withLock { book in
            if book[lease.id] == lease.token { book[lease.id] = nil }
        }
    }

    func held() -> [JobLease] {
        leases.withLock { book in book.map { JobLease(id: $0.key, token: $0.value) } }
    }

    var count: Int { leases.withLock { $0.count } }
}
