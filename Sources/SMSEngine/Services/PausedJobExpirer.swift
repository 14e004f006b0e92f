import Logging
import PostgresClient
import SMSJobStore

/// Ends the pending jobs of paused channels whose time ran out (`expired`): the claim skips paused
/// channels, so no triage would. Its own concern, but no session of its own: it runs after each lease
/// rescue on the rescuer's connection (one connection fewer per daemon on the shared database), and its
/// failures are its own: logged here, they never cost a lease rescue or its backoff.
struct PausedJobExpirer: Sendable {
    struct Configuration: Sendable, Equatable {
        /// Jobs expired per round at most (a huge paused backlog is worked off round by round).
        var batchSize = 1000
    }

    let configuration: Configuration
    let logger: Logger
    let queueFullLog = OccasionalLog()

    /// One round. `sms.expire_paused_jobs` returns at once when nothing is paused.
    func round(on db: PostgresConnection) async {
        do {
            let expired = try await db.runAnnouncing(ExpirePausedJobs(limit: configuration.batchSize)) { error in
                if queueFullLog.due() {
                    logger.error(
                        "the NOTIFY queue is full; expiring paused jobs without announcing them", metadata: ["error": "\(error)"])
                }
            }
            if expired > 0 {
                logger.notice("expired paused jobs whose time ran out", metadata: ["count": "\(expired)"])
            }
        } catch {
            logger.warning("could not expire paused jobs; trying again at the next round", metadata: ["error": "\(error)"])
        }
    }
}
