import Logging

func makeLogger(level: Logger.Level) -> Logger {
    let journal = DaemonLogHandler.underJournal()
    LoggingSystem.bootstrap { _ in DaemonLogHandler(level: level, journal: journal) }
    var logger = Logger(label: "sms-dispatcher")
    logger.logLevel = level
    return logger
}
