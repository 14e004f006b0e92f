import Logging

/// The level of every logger of this process (`log.level`): a reload sets it here, and all of them,
/// the copies the services keep included, log at the new level from their next line.
let processLogLevel = DaemonLogHandler.SharedLevel(.info)

func makeLogger(level: Logger.Level) -> Logger {
    let journal = DaemonLogHandler.underJournal()
    processLogLevel.level = level
    LoggingSystem.bootstrap { _ in DaemonLogHandler(level: processLogLevel, journal: journal) }
    // No `logger.logLevel = level`: that would pin this logger (and every copy) to the start's level.
    return Logger(label: "sms-dispatcher")
}
