/// What becomes of a claimed job: the write-back for one row.
package struct JobOutcome: Sendable, Equatable {
    /// The job and the claim this outcome belongs to: the write-back is fenced on both.
    package var job: JobLease
    package var jobID: Int64 { job.id }
    /// What becomes of the job next, classified once; the row's state, the retry's delay and the
    /// deferral's time all follow from it.
    package var next: Next
    /// The row's `message`: GenAuth's, or the daemon's reason when it decided itself.
    package var message: String?
    /// The call made under this claim, if any.
    package var call: CallRecord?
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
        job: JobLease, next: Next, message: String?, call: CallRecord? = nil, coalesce: Bool = false,
        uncertain: Bool = false, unseenCallProvableUntil: Double? = nil, possibleDuplicate: Bool = false
    ) {
        self.job = job
        self.next = next
        self.message = message
        self.call = call
        self.coalesce = coalesce
        self.uncertain = uncertain
        self.unseenCallProvableUntil = unseenCallProvableUntil
        self.possibleDuplicate = possibleDuplicate
    }

    /// An outcome by its row's state: `pending` with `deferredUntil` is a deferral, `pending` otherwise
    /// a retry after `retryIn` (at once when nil); any other state is final.
    package init(
        job: JobLease, state: JobState, message: String?, call: CallRecord? = nil, retryIn: Duration? = nil,
        deferredUntil: Double? = nil, coalesce: Bool = false, uncertain: Bool = false,
        unseenCallProvableUntil: Double? = nil, possibleDuplicate: Bool = false
    ) {
        let next: Next
        switch (state, deferredUntil) {
        case (.pending, .some(let until)): next = .deferred(until: until)
        case (.pending, nil): next = .retry(in: retryIn ?? .zero)
        default: next = .finished(state)
        }
        self.init(
            job: job, next: next, message: message, call: call, coalesce: coalesce, uncertain: uncertain,
            unseenCallProvableUntil: unseenCallProvableUntil, possibleDuplicate: possibleDuplicate)
    }

    /// A job this daemon holds but does not call now (released at shutdown, held by a pause, withheld at
    /// its slot): pending again at once, no attempt used, with why.
    package static func putBack(_ job: JobLease, because message: String) -> JobOutcome {
        JobOutcome(job: job, next: .putBack, message: message)
    }

    /// The row's state.
    package var state: JobState {
        switch next {
        case .finished(let state): state
        case .retry, .deferred, .putBack: .pending
        }
    }

    /// How long until the job is due again (pending); nil for a final state or a deferral.
    package var retryIn: Duration? {
        switch next {
        case .retry(let delay): delay
        case .putBack: .zero
        case .finished, .deferred: nil
        }
    }

    /// For a deferral: the epoch second (database clock) to try again; counts in `deferrals`.
    package var deferredUntil: Double? {
        if case .deferred(let until) = next { return until }
        return nil
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
        if state == .sent {
            stripped.message = "sent (GenAuth accepted it), but its answer could not be stored: \(error)"
        } else {
            stripped.next = .finished(.failed)
            stripped.message = "the outcome could not be stored (\(error)); was: \(state.rawValue): \(message ?? "")"
        }
        return stripped
    }
}

extension JobOutcome {
    /// What becomes of a claimed job next.
    package enum Next: Sendable, Equatable {
        /// A final state: sent, failed, rejected, expired, superseded.
        case finished(JobState)
        /// Pending again after this delay (a retry after a call, a moment's wait for a busy key).
        case retry(in: Duration)
        /// Pending until this epoch second (database clock): the phone's window, the breaker, a cap's
        /// hour; counts in the row's `deferrals`.
        case deferred(until: Double)
        /// Pending again at once, no call made (released, paused, withheld).
        case putBack
    }
}
