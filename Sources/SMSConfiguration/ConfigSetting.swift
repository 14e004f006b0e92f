import SMSModel

/// A key's name, what it is for, whether its value is a secret, and what a reload may do with it:
/// `check-config`, the unknown-key checks and the reload read these.
package struct ConfigKeySpec: Sendable {
    package let name: String
    package let secret: Bool
    package let reload: ReloadClass
    package let help: String
}

/// One configuration key, declared once: its name and help, how its value is read and checked, where
/// it goes in `DaemonConfiguration`, how `check-config` shows it, and whether a reload may change it.
/// The loader, `check-config`, the environment variable names and the reload's diff all come from the
/// list of these (`DaemonConfiguration.keys`).
struct ConfigSetting {
    let spec: ConfigKeySpec
    let read: (RawValues, inout DaemonConfiguration) throws -> Void
    let show: (DaemonConfiguration) -> String
    /// Whether two configurations hold the same value for this key (the values themselves, secrets
    /// too: `show` redacts them, so it cannot tell).
    let same: (DaemonConfiguration, DaemonConfiguration) -> Bool
    /// Copies this key's value from a newly loaded configuration into the running one (a live key's
    /// reload).
    let adopt: (DaemonConfiguration, inout DaemonConfiguration) -> Void

    /// A key whose value lives at `value`: comparing and adopting it on a reload follow from the path.
    init<T: Equatable>(
        _ name: String, secret: Bool = false, reload: ReloadClass, _ help: String,
        value path: Path<T>,
        read: @escaping (RawValues, inout DaemonConfiguration) throws -> Void,
        show: @escaping (DaemonConfiguration) -> String
    ) {
        self.spec = ConfigKeySpec(name: name, secret: secret, reload: reload, help: help)
        self.read = read
        self.show = show
        self.same = { $0[keyPath: path] == $1[keyPath: path] }
        self.adopt = { new, running in running[keyPath: path] = new[keyPath: path] }
    }

    /// A key with no value of its own, only a fallback for other keys (`channels.defaults.*`): a change
    /// shows, and is adopted, in the keys that fall back to it.
    init(
        fallback name: String, reload: ReloadClass, _ help: String,
        read: @escaping (RawValues, inout DaemonConfiguration) throws -> Void,
        show: @escaping (DaemonConfiguration) -> String
    ) {
        self.spec = ConfigKeySpec(name: name, secret: false, reload: reload, help: help)
        self.read = read
        self.show = show
        self.same = { _, _ in true }
        self.adopt = { _, _ in }
    }

    typealias Path<T> = WritableKeyPath<DaemonConfiguration, T>

    static func string(
        _ name: String, _ path: Path<String>, secret: Bool = false, reload: ReloadClass,
        _ help: String
    ) -> ConfigSetting {
        ConfigSetting(
            name, secret: secret, reload: reload, help, value: path,
            read: { values, config in
                try values.string(name).map { config[keyPath: path] = $0 }
            }, show: { secret ? "<redacted>" : $0[keyPath: path] })
    }

    static func optionalString(
        _ name: String, _ path: Path<String?>, secret: Bool = false, unset: String = "(unset)",
        reload: ReloadClass, _ help: String
    ) -> ConfigSetting {
        ConfigSetting(
            name, secret: secret, reload: reload, help, value: path,
            read: { values, config in
                config[keyPath: path] = try values.string(name)
            }, show: { config in config[keyPath: path] == nil ? unset : secret ? "<redacted>" : config[keyPath: path]! })
    }

    static func int(
        _ name: String, _ path: Path<Int>, in range: ClosedRange<Int>, reload: ReloadClass,
        _ help: String
    ) -> ConfigSetting {
        ConfigSetting(
            name, reload: reload, help, value: path,
            read: { values, config in
                try values.int(name, in: range).map { config[keyPath: path] = $0 }
            }, show: { String($0[keyPath: path]) })
    }

    static func number(
        _ name: String, _ path: Path<Double>, in range: ClosedRange<Double>, reload: ReloadClass,
        _ help: String
    ) -> ConfigSetting {
        ConfigSetting(
            name, reload: reload, help, value: path,
            read: { values, config in
                try values.double(name, in: range).map { config[keyPath: path] = $0 }
            }, show: { String($0[keyPath: path]) })
    }

    /// A duration, written as a number of seconds.
    static func seconds(
        _ name: String, _ path: Path<Duration>, in range: ClosedRange<Double>, reload: ReloadClass,
        _ help: String
    ) -> ConfigSetting {
        ConfigSetting(
            name, reload: reload, help, value: path,
            read: { values, config in
                try values.seconds(name, in: range).map { config[keyPath: path] = $0 }
            }, show: { String($0[keyPath: path].seconds) })
    }

    static func bool(_ name: String, _ path: Path<Bool>, reload: ReloadClass, _ help: String) -> ConfigSetting {
        ConfigSetting(
            name, reload: reload, help, value: path,
            read: { values, config in
                try values.bool(name).map { config[keyPath: path] = $0 }
            }, show: { String($0[keyPath: path]) })
    }

    static func choice<T: RawRepresentable & CaseIterable & Equatable>(
        _ name: String, _ path: Path<T>, reload: ReloadClass,
        _ help: String
    ) -> ConfigSetting
    where T.RawValue == String {
        ConfigSetting(
            name, reload: reload, help, value: path,
            read: { values, config in
                try values.choice(name, as: T.self).map { config[keyPath: path] = $0 }
            }, show: { $0[keyPath: path].rawValue })
    }
}
