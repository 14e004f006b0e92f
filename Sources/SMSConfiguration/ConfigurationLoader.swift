import Configuration
import Foundation
import GenAuth
import PostgresClient
import SystemPackage

extension DaemonConfiguration {
    /// Loads the configuration: the YAML file (if any), `$CREDENTIALS_DIRECTORY`, then `SMSD_*`
    /// environment variables. Throws `ConfigError` naming the key for anything missing or invalid.
    package static func load(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        requireGenAuth: Bool = true
    ) async throws -> (DaemonConfiguration, ConfigSources) {
        var providers: [any ConfigProvider] = []
        // A misspelt SMSD_ variable would silently do nothing: refuse it like an unknown file key.
        let knownNames = Set(keySpecs.map { environmentName($0.name) } + ["SMSD_CONFIG", "SMSD_SQL_DIR"])
        if let unknown = environment.keys.sorted().first(where: {
            $0.hasPrefix("SMSD_") && !$0.hasPrefix("SMSD_TEST_") && !knownNames.contains($0)
        }) {
            throw ConfigError(
                key: unknown,
                "unknown environment variable; every key's variable is SMSD_ and the key in capitals with dots as underscores (see check-config, README)"
            )
        }
        let secretNames = Set(keySpecs.filter(\.secret).map { environmentName($0.name) })
        providers.append(
            EnvironmentVariablesProvider(
                environmentVariables: environment.filter { $0.key.hasPrefix("SMSD_") },
                secretsSpecifier: .dynamic { name, _ in secretNames.contains(name.uppercased()) }
            ).prefixKeys(with: ["smsd"]))
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            do {
                let credentials = try await DirectoryFilesProvider(directoryPath: FilePath(directory))
                // systemd credential names use dashes: genauth.app_secret → genauth-app-secret.
                providers.append(
                    KeyMappingProvider(upstream: credentials) { key in
                        AbsoluteConfigKey([key.components.joined(separator: "-").replacingOccurrences(of: "_", with: "-")])
                    })
            } catch {
                throw ConfigError(key: "CREDENTIALS_DIRECTORY", "cannot read credentials directory \(directory): \(error)")
            }
        }
        var yamlKeys: [String] = []
        if let file {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw ConfigError(key: "--config", "cannot read configuration file \(file)")
            }
            do {
                providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(file)))
                yamlKeys = try YAMLKeyLister.keys(inFile: file)
            } catch let error as ConfigError {
                throw error
            } catch {
                // The parser's first line only (where and what): the lines after it quote the file's
                // text, which may be a secret's line.
                let problem = String(describing: error).split(separator: "\n").first.map(String.init) ?? "unreadable"
                throw ConfigError(key: "--config", "configuration file \(file) is not valid YAML: \(problem)")
            }
        }
        let known = Set(keySpecs.map(\.name))
        if let unknown = yamlKeys.first(where: { !known.contains($0) }) {
            let section = unknown.split(separator: ".").first.map(String.init) ?? unknown
            let siblings = keySpecs.map(\.name).filter { $0.hasPrefix(section + ".") && !$0.hasPrefix("channels.CHANNEL_") }
            throw ConfigError(
                key: unknown,
                "unknown key in \(file ?? "configuration file")"
                    + (siblings.isEmpty
                        ? "; `check-config` lists every key" : "; keys in \(section): \(siblings.joined(separator: ", "))"))
        }
        let reader = ConfigReader(providers: providers)
        let values = RawValues(reader: reader, specs: keySpecs)

        var config = DaemonConfiguration()
        for key in keys { try key.read(values, &config) }
        switch (config.accessKeyID, config.accessKeySecret) {
        case (let id?, let secret?):
            config.dispatcher.genauth.accessKey = .init(id: id, secret: secret)
        case (nil, nil):
            break
        case (nil, _?), (_?, nil):
            throw ConfigError(
                key: config.accessKeyID == nil ? "genauth.access_key_id" : "genauth.access_key_secret",
                "management-token mode needs both genauth.access_key_id and genauth.access_key_secret")
        }
        if let (key, message) = config.dispatcher.inconsistency() {
            throw ConfigError(key: key, message)
        }
        if requireGenAuth {
            try config.validateGenAuth()
        }
        var sources = values.sources
        if let file {
            sources.warnings += secretsReadableByOthers(file: file, yamlKeys: yamlKeys, config: config, environment: environment)
        }
        return (config, sources)
    }

    /// The file is installed readable by everyone (the unit's DynamicUser must read it): a secret
    /// written in it is readable by every local user. Secrets belong in the credential files
    /// (`LoadCredential=`) or the environment.
    static func secretsReadableByOthers(
        file: String, yamlKeys: [String], config: DaemonConfiguration,
        environment: [String: String]
    ) -> [String] {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file),
            let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o004 != 0
        else { return [] }
        var exposed = ["genauth.app_secret", "genauth.access_key_secret"].filter(yamlKeys.contains)
        // The database URL is a secret only when it carries a password. Judged on the value in force, so
        // a file's URL overridden by the environment is not looked at (its password is missed).
        if yamlKeys.contains("database.url"), environment[environmentName("database.url")] == nil,
            ConnInfo.hasPassword(config.dispatcher.databaseURL)
        {
            exposed.append("database.url")
        }
        return exposed.map {
            "\($0) is set in \(file), which every local user may read (mode \(String(mode & 0o777, radix: 8))): move it to /etc/sms-dispatcher/credentials/\($0.replacingOccurrences(of: ".", with: "-").replacingOccurrences(of: "_", with: "-")) (LoadCredential=) or the environment"
        }
    }

    /// The send path needs a host and an app id; `status` and `migrate` do not.
    package func validateGenAuth() throws {
        do {
            try dispatcher.genauth.validate()
        } catch {
            switch error.field {
            case .host:
                throw ConfigError(
                    key: "genauth.host",
                    error.message == "is required"
                        ? "is required (set SMSD_GENAUTH_HOST or genauth.host)" : error.message)
            case .appID:
                throw ConfigError(
                    key: "genauth.app_id",
                    error.message == "is required"
                        ? "is required (set SMSD_GENAUTH_APP_ID or genauth.app_id)" : error.message)
            }
        }
    }

    /// `genauth.app_id` → `SMSD_GENAUTH_APP_ID`.
    package static func environmentName(_ key: String) -> String {
        "SMSD_" + key.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }
}
