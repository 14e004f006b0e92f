import PostgresClient
import SMSModel

/// Removes this process's worker row on a clean stop: `sms.workers` lists running daemons.
public struct UnregisterWorker: Statement {
    public var worker: WorkerIdentity

    public init(worker: WorkerIdentity) { self.worker = worker }

    public static let isPrepared = false
    public static let sql = "DELETE FROM sms.workers WHERE id = $1 AND instance = $2"

    public var bindings: [String?] { [worker.id, worker.instance] }
}
