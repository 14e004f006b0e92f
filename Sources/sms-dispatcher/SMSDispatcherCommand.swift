import ArgumentParser
import SMSConfiguration
import SMSEngine
import SMSJobStore
import SMSModel

@main
struct SMSDispatcherCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sms-dispatcher",
        abstract: "Sends SMS jobs from PostgreSQL through GenAuth's send-SMS API.",
        discussion: "Exit codes: 0 ok, 64 usage, 69 database or API unavailable at start-up, 78 configuration error.",
        version: SMSDispatcherVersion.current,
        subcommands: [
            Run.self, Migrate.self, Enqueue.self, Status.self, CheckConfig.self, Requeue.self, Cancel.self,
            Purge.self, Pause.self, Resume.self, Fraud.self,
        ])
}
