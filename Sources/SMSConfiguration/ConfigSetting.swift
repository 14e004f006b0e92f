import SMSModel

/// A key's name, what it is for, and whether its value is a secret: `check-config` and the
/// unknown-key checks read these.
public struct ConfigKeySpec: Sendable {
    public let name: String
    public let secret: Bool
    public let help: String
}

/// One configuration key, declared once: its name and help, how its value is read and checked, where
/// it goes in `DaemonConfiguration`, and how `check-config` shows it. The loader, `check-config` and the
/// environment variable names all come from the list of these (`DaemonConfiguration.keys`).
struct ConfigSetting {
    let spec: ConfigKeySpec
    let read: (RawValues, inout DaemonConfiguration) throws -> Void
    let show: (DaemonConfiguration) -> String

    init(_ name: String, secret: Bool = false, _ help: String,
         read: @escaping (RawValues, inout DaemonConfiguration) throws -> Void,
         show: @escaping (DaemonConfiguration) -> String) {
        self.spec = ConfigKeySpec(name: name, secret: secret, help: help)
        self.read = read
        self.show = show
    }

    typealias Path<T> = WritableKeyPath<DaemonConfiguration, T>

    static func string(_ name: String, _ path: Path<String>, secret: Bool = false, _ help: String) -> ConfigSetting {
        ConfigSetting(name, secret: secret, help, read: { values, config in
            try values.string(name).map { config[keyPath: path] = $0 }
        }, show: { secret ? "<redacted>" : $0[keyPath: path] })
    }

    static func optionalString(_ name: String, _ path: Path<String?>, secret: Bool = false, unset: String = "(unset)",
                               _ help: String) -> ConfigSetting {
        ConfigSetting(name, secret: secret, help, read: { values, config in
            config[keyPath: path] = try values.string(name)
        }, show: { config in config[keyPath: path] == nil ? unset : secret ? "<redacted>" : config[keyPath: path]! })
    }

    static func int(_ name: String, _ path: Path<Int>, in range: ClosedRange<Int>, _ help: String) -> ConfigSetting {
        ConfigSetting(name, help, read: { values, config in
            try values.int(name, in: range).map { config[keyPath: path] = $0 }
        }, show: { String($0[keyPath: path]) })
    }

    static func number(_ name: String, _ path: Path<Double>, in range: ClosedRange<Double>, _ help: String) -> ConfigSetting {
        ConfigSetting(name, help, read: { values, config in
            try values.double(name, in: range).map { config[keyPath: path] = $0 }
        }, show: { String($0[keyPath: path]) })
    }

    /// A duration, written as a number of seconds.
    static func seconds(_ name: String, _ path: Path<Duration>, in range: ClosedRange<Double>, _ help: String) -> ConfigSetting {
        ConfigSetting(name, help, read: { values, config in
            try values.seconds(name, in: range).map { config[keyPath: path] = $0 }
        }, show: { String($0[keyPath: path].seconds) })
    }

    static func bool(_ name: String, _ path: Path<Bool>, _ help: String) -> ConfigSetting {
        ConfigSetting(name, help, read: { values, config in
            try values.bool(name).map { config[keyPath: path] = $0 }
        }, show: { String($0[keyPath: path]) })
    }

    static func choice<T: RawRepresentable & CaseIterable>(_ name: String, _ path: Path<T>, _ help: String) -> ConfigSetting
        where T.RawValue == String
    {
        ConfigSetting(name, help, read: { values, config in
            try values.choice(name, as: T.self).map { config[keyPath: path] = $0 }
        }, show: { $0[keyPath: path].rawValue })
    }
}
