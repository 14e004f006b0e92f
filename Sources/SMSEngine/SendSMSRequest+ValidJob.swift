import GenAuth
import SMSModel

extension SendSMSRequest {
    /// The request for a job that passed triage: its validated phone (no country code for +86). Here, not
    /// in the GenAuth client, which knows nothing of its users' types.
    package init(_ job: ValidJob) {
        self.init(channel: job.channel.rawValue, phoneNumber: job.phone.number, phoneCountryCode: job.phone.countryCode)
    }
}
