import SMSModel

extension ClaimLoop {
    /// The claim loop's bookkeeping as a pure value (async-http-client's pool state machine is the
    /// model): it takes the turn's events and the clock, and says what the loop is to do; the loop does
    /// the I/O. Unit-tested without a database or a clock.
    struct StateMachine: Sendable {
        let concurrency: Int
        /// How long a drain waits for calls in flight and outcomes (`Configuration.drainLimit`).
        let drainLimit: Duration
        let claimLinger: Duration

        /// Calls holding a slot: started and not yet ended (answered, failed, or reclaimed as overdue).
        private(set) var inFlight = 0
        /// When the graceful shutdown began; nil while claiming.
        /// Claiming, or draining since a graceful shutdown began.
        private(set) var phase = Phase.claiming
        /// Claimed and sendable, awaiting their reservation (kept across a database outage): the jobs
        /// to reserve this turn.
        private(set) var candidates: [ValidJob] = []
        private var lastClaim: ContinuousClock.Instant
        /// The claim's limit while its turn is out (nil otherwise): a claim that took as many is full.
        private var issuedLimit: Int? = nil
        /// The timers whose event is on its way: one of each at a time.
        private var armed: Set<Timer> = []
        /// Something said jobs may be due (a notification, the poll tick, a full claim, a linger that
        /// ran out) and no claim has looked since. A call answered or an outcome written frees a slot
        /// but says nothing of the queue: claiming on each would be a statement per job for nothing
        /// at a few hundred jobs a second. A due signal that found no free slot stays up until one frees.
        private(set) var mayBeDue = true

        /// Some jobs fall due with no notification: a retry or deferral reaching its time, a job
        /// rescued or released by another daemon, rows a claim skipped while another held them. An
        /// idle loop finds them on the poll tick; a busy one (calls in flight) looks again once this
        /// long has passed since its last claim (an answered call, a written outcome or the recheck
        /// timer, `Timer.recheck`, tells it so), as it did when every answer led to a claim.
        static let recheck = Duration.milliseconds(100)

        init(concurrency: Int, drainLimit: Duration, claimLinger: Duration, now: ContinuousClock.Instant) {
            self.concurrency = concurrency
            self.drainLimit = drainLimit
            self.claimLinger = claimLinger
            self.lastClaim = now - .seconds(1)
        }

        /// What the loop does now. After any action but `wait` and `stop` it asks again at once (with
        /// the events that came meanwhile): the machine, not an event the loop posts to itself, knows
        /// that a full claim or jobs still awaiting their reservation mean another round.
        enum Action: Sendable, Equatable {
            /// Claim up to `limit` (at least 1) due jobs and reserve them with those awaiting their
            /// reservation, in one transaction.
            case claim(limit: Int)
            /// Reserve the jobs awaiting their reservation (a chunk of them); claim nothing.
            case reserve
            /// Shutting down: these were claimed and never sent; put them back to pending, no attempt
            /// used.
            case releaseUnsent([ValidJob])
            /// Nothing to do until the next event.
            case wait
            /// Drained (every call answered, every outcome written), or the grace period is over.
            case stop(inFlight: Int)
        }

        /// Whether the loop claims, or drains for a graceful shutdown.
        enum Phase: Sendable, Equatable {
            case claiming
            case draining(since: ContinuousClock.Instant)
        }

        /// A wake-up the loop arms for itself: the event comes back after the timer's duration.
        enum Timer: Sendable, Hashable {
            /// A few free slots are waiting for company: claim them anyway after `claimLinger`.
            case linger
            /// Calls are in flight and no claim is due: look again after `recheck`.
            case recheck
        }

        /// How a turn on the database ended, as far as the bookkeeping goes.
        enum TurnEnd: Sendable, Equatable {
            /// No session: nothing ran.
            case noSession
            /// It went through: `waiting` still await their reservation (a later chunk, another job for
            /// the same phone and channel, no verdict), `started` calls are in flight, and its claim took
            /// `claimedCount` jobs.
            case committed(waiting: [ValidJob], started: Int, claimedCount: Int)
            /// Rolled back for certain: the jobs it claimed (`claimed`) are no longer this process's;
            /// the others of `waiting` still await their reservation.
            case rolledBack(claimed: Set<Int64>, waiting: [ValidJob])
            /// It failed once its COMMIT was sent, so it may have committed: `waiting` (its claimed jobs
            /// too) stay candidates.
            case mayHaveCommitted(waiting: [ValidJob])
        }

        /// The action, and the timers to arm with it.
        struct Decision: Sendable, Equatable {
            var action: Action
            var timers: [Timer] = []
        }

        /// Takes the turn's events. Returns true when this turn began the shutdown.
        mutating func receive(_ events: [DispatchEvent], now: ContinuousClock.Instant) -> Bool {
            var beganDraining = false
            for event in events {
                switch event {
                case .callsFinished(let count):
                    inFlight -= count
                    recheckIfDue(now)
                case .shutdownRequested where phase == .claiming:
                    phase = .draining(since: now)
                    beganDraining = true
                case .lingerElapsed:
                    armed.remove(.linger)
                    mayBeDue = true
                case .recheckElapsed:
                    armed.remove(.recheck)
                    recheckIfDue(now)
                case .jobsAvailable, .tick:
                    mayBeDue = true
                case .outcomesWritten:
                    recheckIfDue(now)
                case .shutdownRequested, .clock:
                    break
                }
            }
            return beganDraining
        }

        /// A slot freed or a write done says nothing of the queue, but a busy loop looks again once
        /// `recheck` has passed since its last claim.
        private mutating func recheckIfDue(_ now: ContinuousClock.Instant) {
            if now - lastClaim >= Self.recheck { mayBeDue = true }
        }

        /// What to do now. `unsettled`: outcomes handed to the writer and not yet written; they hold
        /// their jobs too, so while the writer is a full round behind (a slow or unreachable database)
        /// nothing more is claimed.
        mutating func next(unsettled: Int, now: ContinuousClock.Instant) -> Decision {
            if case .draining(let since) = phase {
                if !candidates.isEmpty {
                    defer { candidates = [] }
                    return Decision(action: .releaseUnsent(candidates))
                }
                if (inFlight == 0 && unsettled == 0) || now - since > drainLimit {
                    return Decision(action: .stop(inFlight: inFlight))
                }
                return Decision(action: .wait)
            }
            var timers: [Timer] = []
            let free = unsettled >= concurrency ? 0 : max(0, concurrency - inFlight - candidates.count)
            if mayBeDue && free > 0 {
                // Under load, calls finish one by one and each wakes the loop: claiming each single free
                // slot would cost a statement per job. A few free slots wait for company; a quiet queue
                // (many free slots) claims at once.
                let lingering = free < max(1, concurrency / 4) && now - lastClaim < claimLinger
                if !lingering {
                    lastClaim = now
                    mayBeDue = false
                    issuedLimit = free
                    return Decision(action: .claim(limit: free))
                }
                if armed.insert(.linger).inserted { timers.append(.linger) }
            }
            // Without it a busy loop whose calls and outcomes all came within `recheck` of its last
            // claim would look again only on the poll tick.
            if inFlight > 0, !mayBeDue, armed.insert(.recheck).inserted { timers.append(.recheck) }
            // Jobs awaiting their reservation get it whether or not anything is due.
            return Decision(action: candidates.isEmpty ? .wait : .reserve, timers: timers)
        }

        /// A turn on the database ended (the loop ran the `claim` or `reserve` it was told to): what it
        /// leaves awaiting a reservation, what calls it started, and whether the jobs it was to claim
        /// may still be due.
        mutating func turnEnded(_ end: TurnEnd) {
            defer { issuedLimit = nil }
            switch end {
            case .noSession:
                // Nothing ran: a claim it was to make is still to be made.
                if issuedLimit != nil { mayBeDue = true }
            case .committed(let waiting, let started, let claimedCount):
                candidates = waiting
                inFlight += started
                // A full claim means more may be due: the next decision claims again.
                if let limit = issuedLimit, claimedCount >= limit { mayBeDue = true }
            case .rolledBack(let claimed, let waiting):
                // Its claim never happened: the jobs it claimed are someone else's to claim.
                candidates = waiting.filter { !claimed.contains($0.id) }
                mayBeDue = true
            case .mayHaveCommitted(let waiting):
                // The next round's reservation tells (granted again under the job's own window, or lost).
                candidates = waiting
                mayBeDue = true
            }
        }
    }
}
