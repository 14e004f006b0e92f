/// The LISTEN/NOTIFY channels of the schema, named once (the SQL that sends them is in `sql/`).
package enum NotificationChannel: String, Sendable, CaseIterable {
    /// Jobs may be due: sent by the insert trigger, a requeue and a resume. The daemons listen.
    case jobsAvailable = "sms_jobs"
    /// `<id>:<state>[,...]` for every job settled or put back to wait (`sms.announce`). Producers listen.
    case jobEvents = "sms_job_events"
    /// An operator's pause or resume (`sms.pause`, `sms.resume`). The daemons listen.
    case controls = "sms_controls"
}

/// One item of an `sms_job_events` payload: a job and the state its row was just given.
package struct JobEvent: Sendable, Equatable {
    package var id: Int64
    /// The state written (`pending` for a deferral or a retry). Kept as text: a newer schema may
    /// announce a state this build does not know, and the row is what a listener reads anyway.
    package var state: String

    package init(id: Int64, state: String) {
        self.id = id
        self.state = state
    }

    /// The events of one payload (`<id>:<state>` separated by `,`), malformed items skipped.
    package static func parse(payload: String) -> [JobEvent] {
        payload.split(separator: ",").compactMap { item in
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let id = Int64(parts[0]), !parts[1].isEmpty else { return nil }
            return JobEvent(id: id, state: String(parts[1]))
        }
    }
}
