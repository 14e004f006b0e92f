import PostgresClient
import Testing

@testable import SMSEngine
@testable import SMSModel

/// The claim loop's decisions without a database or a clock: how much to claim, when a few free slots
/// wait for company, back-pressure from the writer, and the shutdown drain.
@Suite("Claim loop state machine")
struct ClaimLoopStateMachineTests {
    let start = ContinuousClock.now

    func machine(concurrency: Int = 64) -> ClaimLoop.StateMachine {
        ClaimLoop.StateMachine(
            concurrency: concurrency, drainLimit: .seconds(10), claimLinger: .milliseconds(2),
            now: start)
    }

    func job(_ id: Int64) -> ValidJob {
        let claimed = ClaimedJob(
            id: id, leaseToken: id, channel: "CHANNEL_LOGIN", phoneNumber: "13800138000",
            phoneCountryCode: nil, attempts: 0, maxAttempts: 5)
        return ValidJob(
            claimed: claimed, channel: .login, phone: ValidatedPhone(number: "13800138000", countryCode: nil),
            rule: ChannelRule())
    }

    @Test("an idle loop claims every free slot at once")
    func claimsFreeSlots() {
        var machine = machine()
        _ = machine.receive([.jobsAvailable], now: start)
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 64))
        machine.turnEnded(.committed(waiting: [], started: 60, claimedCount: 60))
        _ = machine.receive([.callsFinished(20)], now: start + .milliseconds(10))
        #expect(machine.inFlight == 40)
        #expect(
            machine.next(unsettled: 0, now: start + .milliseconds(10)).action == .wait,
            "calls answered free slots, but nothing said jobs are due")
        _ = machine.receive([.outcomesWritten], now: start + .milliseconds(10))
        #expect(machine.next(unsettled: 0, now: start + .milliseconds(10)).action == .wait)
        _ = machine.receive([.tick], now: start + .milliseconds(10))
        #expect(machine.next(unsettled: 0, now: start + .milliseconds(10)).action == .claim(limit: 24))
    }

    @Test("a full claim decides another claim at once, with no event posted")
    func aFullClaimClaimsAgain() {
        var machine = machine(concurrency: 4)
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 4))
        machine.turnEnded(.committed(waiting: [job(1), job(2)], started: 0, claimedCount: 2))
        #expect(machine.next(unsettled: 0, now: start).action == .reserve, "the claimed jobs' reservation, nothing more")
        machine.turnEnded(.committed(waiting: [], started: 2, claimedCount: 0))
        #expect(machine.next(unsettled: 0, now: start).action == .wait)
        _ = machine.receive([.callsFinished(2), .tick], now: start + .seconds(1))
        #expect(machine.next(unsettled: 0, now: start + .seconds(1)).action == .claim(limit: 4))
        machine.turnEnded(.committed(waiting: [], started: 0, claimedCount: 4))
        #expect(machine.next(unsettled: 0, now: start + .seconds(1)).action == .claim(limit: 4), "full: more may be due")
    }

    @Test("a busy loop looks for jobs that fell due unannounced at least every recheck interval")
    func busyLoopRechecks() {
        var machine = machine()
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 64))
        machine.turnEnded(.committed(waiting: [], started: 40, claimedCount: 40))
        let soon = start + ClaimLoop.StateMachine.recheck / 2
        _ = machine.receive([.callsFinished(10), .outcomesWritten], now: soon)
        #expect(machine.next(unsettled: 0, now: soon).action == .wait)
        let later = start + ClaimLoop.StateMachine.recheck
        _ = machine.receive([.callsFinished(10)], now: later)
        #expect(machine.next(unsettled: 0, now: later).action == .claim(limit: 44))
    }

    @Test("a due signal that finds no free slot waits for one; a failed claim asks again")
    func dueSignalWaitsForASlot() {
        var machine = machine(concurrency: 4)
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 4))
        machine.turnEnded(.committed(waiting: [], started: 4, claimedCount: 0))
        _ = machine.receive([.jobsAvailable], now: start + .seconds(1))
        #expect(machine.next(unsettled: 0, now: start + .seconds(1)).action == .wait)
        #expect(machine.mayBeDue)
        _ = machine.receive([.callsFinished(4)], now: start + .seconds(2))
        #expect(machine.next(unsettled: 0, now: start + .seconds(2)).action == .claim(limit: 4))
        #expect(!machine.mayBeDue)
        // The claim never ran (no session): the jobs may still be due.
        machine.turnEnded(.noSession)
        #expect(machine.next(unsettled: 0, now: start + .seconds(3)).action == .claim(limit: 4))
        // Back-pressure: the writer a full round behind holds the due signal until it catches up.
        _ = machine.receive([.jobsAvailable], now: start + .seconds(4))
        #expect(machine.next(unsettled: 4, now: start + .seconds(4)).action == .wait)
        _ = machine.receive([.outcomesWritten], now: start + .seconds(4))
        #expect(machine.next(unsettled: 0, now: start + .seconds(4)).action == .claim(limit: 4))
    }

    @Test("a few free slots right after a claim wait for company, once armed; then they are claimed")
    func lingers() {
        var machine = machine()
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 64))
        machine.turnEnded(.committed(waiting: [], started: 64, claimedCount: 64))
        _ = machine.receive([.callsFinished(3)], now: start + .milliseconds(1))
        #expect(machine.next(unsettled: 0, now: start + .milliseconds(1)) == .init(action: .wait, timers: [.linger]))
        _ = machine.receive([.callsFinished(1)], now: start + .milliseconds(1))
        #expect(
            machine.next(unsettled: 0, now: start + .milliseconds(1)) == .init(action: .wait),
            "one wake-up on its way is enough")
        _ = machine.receive([.lingerElapsed], now: start + .milliseconds(3))
        #expect(machine.next(unsettled: 0, now: start + .milliseconds(3)).action == .claim(limit: 4))
    }

    @Test("jobs awaiting their reservation and unwritten outcomes hold slots; a full writer round stops claims")
    func backPressure() {
        var machine = machine(concurrency: 8)
        machine.turnEnded(.committed(waiting: [job(1), job(2)], started: 0, claimedCount: 0))
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 6))
        #expect(machine.next(unsettled: 8, now: start + .seconds(1)).action == .reserve, "candidates still get their turn")
        // A failed reservation keeps its candidates; a successful one starts their calls.
        #expect(machine.candidates.map(\.id) == [1, 2])
        machine.turnEnded(.committed(waiting: [job(2)], started: 1, claimedCount: 0))
        #expect(machine.candidates.map(\.id) == [2] && machine.inFlight == 1)
    }

    @Test("a failure once the COMMIT was sent is a rollback only when the server says so")
    func rolledBackOnlyWhenCertain() {
        let rollback = PostgresError(
            code: .queryFailed, sqlState: PostgresError.SQLState.inFailedTransaction,
            message: "COMMIT answered ROLLBACK", pipelineStep: 1)
        let reservationFailed = PostgresError(code: .queryFailed, sqlState: "40P01", message: "deadlock", pipelineStep: 0)
        let commitFailed = PostgresError(code: .queryFailed, sqlState: "40001", message: "serialization", pipelineStep: 1)
        let lost = PostgresError(code: .connectionLost, message: "server closed the connection", pipelineStep: 0)
        let shutDown = PostgresError(code: .queryFailed, sqlState: "57P01", message: "admin shutdown", pipelineStep: 0)
        #expect(ClaimLoop.rolledBack(rollback))
        #expect(ClaimLoop.rolledBack(reservationFailed), "the COMMIT after it was skipped")
        #expect(!ClaimLoop.rolledBack(commitFailed), "the COMMIT's own error: not certain")
        #expect(!ClaimLoop.rolledBack(lost), "the COMMIT may have gone through")
        #expect(!ClaimLoop.rolledBack(shutDown), "the connection went with it")
    }

    @Test("a claim rolled back is forgotten: its jobs leave the candidates, an earlier claim's stay and hold their slots")
    func forgetsARolledBackClaim() {
        var machine = machine(concurrency: 8)
        machine.turnEnded(.committed(waiting: [job(1), job(2)], started: 0, claimedCount: 0))
        machine.turnEnded(.rolledBack(claimed: [3, 4], waiting: [job(1), job(2), job(3), job(4)]))
        #expect(machine.candidates.map(\.id) == [1, 2])
        #expect(machine.next(unsettled: 0, now: .now).action == .claim(limit: 6))
    }

    @Test("a turn that may have committed keeps every job a candidate (the next reservation tells) and claims again")
    func mayHaveCommitted() {
        var machine = machine(concurrency: 8)
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 8))
        machine.turnEnded(.mayHaveCommitted(waiting: [job(1), job(2)]))
        #expect(machine.candidates.map(\.id) == [1, 2] && machine.inFlight == 0)
        #expect(machine.next(unsettled: 0, now: start + .seconds(1)).action == .claim(limit: 6))
        machine.turnEnded(.committed(waiting: [job(1), job(2)], started: 0, claimedCount: 0))
        #expect(machine.next(unsettled: 0, now: start + .seconds(2)).action == .reserve)
        // A reserve-only turn with no session changes nothing and makes nothing due.
        machine.turnEnded(.noSession)
        #expect(!machine.mayBeDue)
        #expect(machine.next(unsettled: 0, now: start + .seconds(3)).action == .reserve)
    }

    @Test("shutdown: unsent jobs go back first, then the loop waits for calls and the writer, then stops")
    func drains() {
        var machine = machine()
        machine.turnEnded(.committed(waiting: [job(1)], started: 2, claimedCount: 0))
        let began = machine.receive([.shutdownRequested], now: start)
        let beganAgain = machine.receive([.shutdownRequested], now: start)
        #expect(began && !beganAgain, "it begins once")
        #expect(machine.next(unsettled: 0, now: start) == .init(action: .releaseUnsent([job(1)])))
        #expect(machine.next(unsettled: 1, now: start) == .init(action: .wait), "no timers while draining")
        _ = machine.receive([.callsFinished(2)], now: start + .seconds(1))
        #expect(machine.next(unsettled: 3, now: start + .seconds(1)).action == .wait, "outcomes not yet written")
        #expect(machine.next(unsettled: 0, now: start + .seconds(1)).action == .stop(inFlight: 0))
    }

    @Test("the recheck timer: armed once when calls are in flight and no claim is due; run out, it makes jobs possibly due")
    func recheckTimer() {
        var machine = machine()
        #expect(machine.next(unsettled: 0, now: start) == .init(action: .claim(limit: 64)), "nothing in flight: no timer")
        machine.turnEnded(.committed(waiting: [], started: 10, claimedCount: 0))
        #expect(machine.next(unsettled: 0, now: start) == .init(action: .wait, timers: [.recheck]))
        #expect(machine.next(unsettled: 0, now: start) == .init(action: .wait), "one timer at a time")
        // Every answer and outcome within the recheck interval of the claim: no look by themselves.
        _ = machine.receive([.callsFinished(5), .outcomesWritten], now: start + .milliseconds(40))
        #expect(machine.next(unsettled: 0, now: start + .milliseconds(40)).action == .wait)
        let later = start + ClaimLoop.StateMachine.recheck
        _ = machine.receive([.recheckElapsed], now: later)
        #expect(machine.next(unsettled: 0, now: later).action == .claim(limit: 59))
        #expect(
            machine.next(unsettled: 0, now: later) == .init(action: .wait, timers: [.recheck]),
            "calls still in flight: armed again after that claim")
        // A timer that runs out soon after a later claim makes nothing due; the next one will.
        _ = machine.receive([.recheckElapsed], now: later + .milliseconds(10))
        #expect(machine.next(unsettled: 0, now: later + .milliseconds(10)) == .init(action: .wait, timers: [.recheck]))
        _ = machine.receive([.shutdownRequested], now: later + .milliseconds(20))
        #expect(machine.next(unsettled: 0, now: later + .milliseconds(20)).timers.isEmpty, "not while draining")
    }

    @Test("the loop's clock makes no jobs due, and ends a drain past its grace period")
    func clockSaysNothingOfTheQueue() {
        var machine = machine()
        #expect(machine.next(unsettled: 0, now: start).action == .claim(limit: 64))
        machine.turnEnded(.committed(waiting: [], started: 5, claimedCount: 0))
        let later = start + .seconds(10)
        _ = machine.receive([.clock], now: later)
        #expect(machine.next(unsettled: 0, now: later).action == .wait, "a clock is not a poll")
        _ = machine.receive([.shutdownRequested], now: later)
        _ = machine.receive([.clock], now: later + .seconds(11))
        #expect(machine.next(unsettled: 0, now: later + .seconds(11)).action == .stop(inFlight: 5))
    }

    @Test func theGracePeriodEndsADrainThatDoesNotFinish() {
        var machine = machine()
        machine.turnEnded(.committed(waiting: [], started: 5, claimedCount: 0))
        _ = machine.receive([.shutdownRequested], now: start)
        #expect(machine.next(unsettled: 0, now: start + .seconds(9)).action == .wait)
        #expect(machine.next(unsettled: 0, now: start + .seconds(11)).action == .stop(inFlight: 5))
    }
}
