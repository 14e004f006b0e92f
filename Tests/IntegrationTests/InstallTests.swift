import Foundation
import Testing
import SMSTestSupport

/// Issue 13: `make install` followed by `systemctl enable --now` must start. The unit runs as a
/// DynamicUser (a uid of no account, in no group of ours): everything it reads at start must be
/// readable by such a user. Tested by running the installed `check-config` as one with setpriv, as
/// systemd would (systemd itself is never booted here: it would clean /tmp for the whole machine).
@Suite("install")
struct InstallTests {
    static let asRoot = getuid() == 0
    /// In systemd's DynamicUser range (61184–65519), with no passwd entry.
    static let dynamicUser = 64_917

    /// A fresh DESTDIR the dynamic user can traverse (mktemp-style directories are 0700).
    static func destination() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smsd-install-\(UUID().uuidString)")
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o755])
        return directory
    }

    static func installFiles(into destination: URL, prefix: String = "/usr/local") async throws -> (status: Int32, output: String)
    {
        try await ChildProcess.run(
            "/usr/bin/make",
            [
                "-C", TestEnvironment.repositoryRoot.path, "--no-print-directory", "install-files",
                "DESTDIR=\(destination.path)", "PREFIX=\(prefix)", "BIN=\(TestEnvironment.binDirectory.path)",
            ], timeout: .seconds(120))
    }

    static func checkConfigAsDynamicUser(
        _ destination: URL, prefix: String = "/usr/local"
    ) async throws -> (status: Int32, output: String) {
        try await ChildProcess.run(
            "/usr/bin/setpriv",
            [
                "--reuid=\(dynamicUser)", "--regid=\(dynamicUser)", "--clear-groups",
                destination.path + prefix + "/bin/sms-dispatcher", "check-config",
                "--config", destination.path + "/etc/sms-dispatcher/sms-dispatcher.yaml",
            ])
    }

    static func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test(.enabled(if: asRoot, "needs root: installs root-owned files and runs check-config as another uid (setpriv)"))
    func theInstalledServiceReadsItsConfigurationAsADynamicUser() async throws {
        let destination = try Self.destination()
        defer { try? FileManager.default.removeItem(at: destination) }
        let installed = try await Self.installFiles(into: destination)
        #expect(installed.status == 0, "\(installed.output)")
        let config = destination.path + "/etc/sms-dispatcher/sms-dispatcher.yaml"
        #expect(try Self.mode(config) == 0o644)
        for secret in ["genauth-app-secret", "genauth-access-key-secret", "database-url"] {
            #expect(try Self.mode(destination.path + "/etc/sms-dispatcher/credentials/" + secret) == 0o600, "\(secret)")
        }
        #expect(
            try Self.mode(destination.path + "/usr/local/share/sms-dispatcher/sql/schema/functions/reserve_sends.sql") == 0o644)

        let checked = try await Self.checkConfigAsDynamicUser(destination)
        #expect(checked.status == 0, "\(checked.output)")
        #expect(checked.output.contains("configuration OK (file: \(config))"), "\(checked.output)")

        // The file as the old install left it (0640 root:root): the service could not read it and the
        // unit failed with 78. A reinstall keeps an operator's file and says what to do.
        let operatorEdit = "\n# edited by the operator\n"
        guard let handle = FileHandle(forWritingAtPath: config) else { throw TestSetupError("cannot open \(config)") }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(operatorEdit.utf8))
        try handle.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: config)
        let unreadable = try await Self.checkConfigAsDynamicUser(destination)
        #expect(unreadable.status == 78, "\(unreadable.output)")
        #expect(unreadable.output.contains("cannot read configuration file"), "\(unreadable.output)")
        let reinstalled = try await Self.installFiles(into: destination)
        #expect(reinstalled.status == 0, "\(reinstalled.output)")
        #expect(reinstalled.output.contains("warning: \(config) is not readable by others"), "\(reinstalled.output)")
        #expect(reinstalled.output.contains("chmod 0644"), "\(reinstalled.output)")
        #expect(try Self.mode(config) == 0o640, "an operator's file is not changed")
        #expect(try String(contentsOfFile: config, encoding: .utf8).hasSuffix(operatorEdit), "nor overwritten")
    }

    @Test(.enabled(if: asRoot, "needs root: installs root-owned files"))
    func theInstalledUnitNamesTheInstalledBinaryAndVerifies() async throws {
        let destination = try Self.destination()
        defer { try? FileManager.default.removeItem(at: destination) }
        let prefix = "/opt/sms-dispatcher"
        let installed = try await Self.installFiles(into: destination, prefix: prefix)
        #expect(installed.status == 0, "\(installed.output)")
        let unit = try String(
            contentsOfFile: destination.path + prefix + "/lib/systemd/system/sms-dispatcher.service",
            encoding: .utf8)
        #expect(
            unit.contains(
                "ExecStartPre=\(prefix)/bin/sms-dispatcher check-config --config /etc/sms-dispatcher/sms-dispatcher.yaml"))
        #expect(unit.contains("ExecStart=\(prefix)/bin/sms-dispatcher run --config /etc/sms-dispatcher/sms-dispatcher.yaml"))
        #expect(unit.contains("Documentation=file:\(prefix)/share/doc/sms-dispatcher/README.md"))
        #expect(!unit.contains("/usr/local/"), "\(unit)")
        let checked = try await Self.checkConfigAsDynamicUser(destination, prefix: prefix)
        #expect(checked.status == 0, "\(checked.output)")

        // systemd-analyze checks the commands exist: point them at the DESTDIR copy.
        let verifiable = destination.appendingPathComponent("sms-dispatcher.service").path
        try unit.replacingOccurrences(of: prefix + "/bin/", with: destination.path + prefix + "/bin/")
            .write(toFile: verifiable, atomically: true, encoding: .utf8)
        let verified = try await ChildProcess.run("/usr/bin/systemd-analyze", ["verify", verifiable])
        #expect(verified.status == 0, "\(verified.output)")
        #expect(!verified.output.lowercased().contains("error"), "\(verified.output)")
    }
}
