import PostgresClient
import SMSModel

/// Removes this process's worker row on a clean stop: `sms.workers` lists running daemons.
package struct UnregisterWorker: Statement {
    package var worker: WorkerIdentity

    package init(worker: WorkerIdentity) { self.worker = worker }

    package static let isPrepared = false
    package static let sql = "DELETE FROM sms.workers WHERE id = $1 AND instance = $2"

    package var bindings: [String?] { [worker.id, worker.instance] }
}
