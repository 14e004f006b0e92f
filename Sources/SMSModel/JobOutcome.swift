/// What becomes of a claimed job: the write-back for one row.
package struct JobOutcome: Sendable, Equatable {
    /// The job and the claim this outcome belongs to: the write-back is fenced on both.
    package var job: JobLease
    package var jobID: Int64 { job.id }
    /// `sent`, `failed`, `rejected`, `expired`, or `pending` for a scheduled retry.
    package var state: JobState
    /// The row's `message`: GenAuth's, or the daemon's reason when it decided itself.
    package var message: String?
    /// The call made under this claim, if any.
    package var call: CallRecord?
    /// How long until the retry, for `pending`.
    package var retryIn: Duration?
    /// For a deferral: the epoch second (database clock) to try again; counts in `deferrals`.
    package var deferredUntil: Double?
    /// When sent: supersede older pending jobs for the same phone and channel.
    package var coalesce: Bool
    /// Some call of this job may have reached GenAuth without our learning its answer (the request was
    /// written, no answer came): its phone+channel window stays held, and a retry that GenAuth calls
    /// "too frequent" proves that call went out.
    package var uncertain: Bool
    /// Set when this outcome's own call may have gone out unseen (the request was written, and no answer
    /// of GenAuth's said it was not accepted: `AnswerClass.mayHaveSent`): until when GenAuth can prove it
    /// (epoch seconds, database clock; from the earliest the call can have started, `ProofWindow`). The
    /// job keeps the phone's window, stays uncertain, and its earliest such call's window counts.
    package var unseenCallProvableUntil: Double?
    package var callMayHaveSent: Bool { unseenCallProvableUntil != nil }
    /// GenAuth accepted this call after its window to prove an earlier unanswered call had closed: the
    /// phone may have had two SMS for this job. Counted (`smsd_possible_duplicates_total`) and said on the row.
    package var possibleDuplicate: Bool

    package init(
        job: JobLease, state: JobState, message: String?, call: CallRecord? = nil, retryIn: Duration? = nil,
        deferredUntil: Double? = nil, coalesce: Bool = false, uncertain: Bool = false,
        unseenCallProvableUntil: Double? = nil, possibleDuplicate: Bool = false
    ) {
        self.job = job
        self.state = state
        self.message = message
        self.call = call
        self.retryIn = retryIn
        self.deferredUntil = deferredUntil
        self.coalesce = coalesce
        self.uncertain = uncertain
        self.unseenCallProvableUntil = unseenCallProvableUntil
        self.possibleDuplicate = possibleDuplicate
    }

    /// This outcome without anything GenAuth sent, for a row the database refused to store it on (a
    /// data error: a value out of a column's range). What happened stays true: a sent SMS stays
    /// `sent`; anything else ends `failed`, both with the database's reason.
    package func storable(after error: String) -> JobOutcome {
        var stripped = self
        if var call = stripped.call {
            call = CallRecord(
                httpStatus: nil, statusCode: nil, apiCode: nil, message: nil, requestID: nil,
                startedAt: call.startedAt, finishedAt: call.finishedAt)
            stripped.call = call
        }
        stripped.deferredUntil = nil
        stripped.retryIn = nil
        if state == .sent {
            stripped.message = "sent (GenAuth accepted it), but its answer could not be stored: \(error)"
        } else {
            stripped.state = .failed
            stripped.message = "the outcome could not be stored (\(error)); was: \(state.rawValue): \(message ?? "")"
        }
        return stripped
    }
}
