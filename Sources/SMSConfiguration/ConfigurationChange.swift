import SMSModel

/// What a reload (SIGHUP) makes of a newly loaded configuration, derived from each key's `ReloadClass`:
/// the live keys' new values are taken, the restart-only keys keep their running values and are named.
package struct ConfigurationChange: Sendable {
    /// The configuration to run with from now on: the running one with the live keys' new values (so
    /// its restart-only values are still the ones the running services hold).
    package let applied: DaemonConfiguration
    /// Live keys whose value changed, now in force; a field changed on every channel is one entry,
    /// `channels.*.ttl`.
    package let live: [String]
    /// Restart-only keys whose value changed: not applied until a restart. Names only: some values are
    /// secrets (database.url, genauth.app_secret).
    package let needsRestart: [String]
}

extension DaemonConfiguration {
    /// Compares this (running) configuration with `new`, key by key.
    package func change(to new: DaemonConfiguration) -> ConfigurationChange {
        var applied = self
        var live: [String] = []
        var needsRestart: [String] = []
        for key in Self.keys where !key.same(self, new) {
            switch key.spec.reload {
            case .live:
                key.adopt(new, &applied)
                live.append(key.spec.name)
            case .restart:
                needsRestart.append(key.spec.name)
            }
        }
        return ConfigurationChange(applied: applied, live: Self.collapsingChannels(live), needsRestart: needsRestart)
    }

    /// The reload class of a key; nil for a name that is no key.
    package static func reloadClass(of key: String) -> ReloadClass? {
        keySpecs.first { $0.name == key }?.reload
    }

    /// `channels.defaults.ttl` changed shows in all 11 channels' keys: one line should say
    /// `channels.*.ttl`, not eleven names.
    private static func collapsingChannels(_ names: [String]) -> [String] {
        let prefix = "channels.CHANNEL_"
        var perField: [String: Int] = [:]
        for name in names where name.hasPrefix(prefix) {
            if let field = name.split(separator: ".").last { perField[String(field), default: 0] += 1 }
        }
        var result: [String] = []
        for name in names {
            guard name.hasPrefix(prefix), let field = name.split(separator: ".").last.map(String.init),
                perField[field] == Channel.allCases.count
            else {
                result.append(name)
                continue
            }
            let all = "channels.*.\(field)"
            if !result.contains(all) { result.append(all) }
        }
        return result
    }
}
