/// What a reload (SIGHUP, `systemctl reload`) may do with a key, decided once per key in
/// `DaemonConfiguration.keys`; the reload's diff (`DaemonConfiguration.change(to:)`) derives from it.
package enum ReloadClass: String, Sendable, CaseIterable {
    /// Read anew by a reload and in force from the next claim on (jobs already in a call finish under
    /// the settings they started with), or from the next log line for `log.level`.
    case live
    /// Held by something made once at start (a connection, a socket, the GenAuth pool, a service's
    /// timer, the worker's identity): a reload names the key in its log line and keeps the running
    /// value until the daemon restarts.
    case restart
}
