import GenAuth
import Logging
import SMSEngine
import SMSModel

extension DaemonConfiguration {
    /// Every key, declared once: name, where its value goes, its range, its help text, and what a reload
    /// (SIGHUP) may do with it. `live`: the engine reads it afresh for each batch (or each log line);
    /// `restart`: something made once at start holds it (a connection, a socket, the GenAuth pool, a
    /// service's timer, this worker's identity).
    static var keys: [ConfigSetting] { baseKeys + channelKeys }

    private static var baseKeys: [ConfigSetting] {
        [
            .string(
                "database.url", \.dispatcher.databaseURL, secret: true, reload: .restart,
                "libpq connection string or URI (may hold a password)"),
            .string(
                "genauth.host", \.dispatcher.genauth.host, reload: .restart,
                "GenAuth app host base URL, e.g. https://example.genauth.ai"),
            .string("genauth.app_id", \.dispatcher.genauth.appID, reload: .restart, "GenAuth app id, sent in the app-id header"),
            .optionalString("genauth.app_secret", \.appSecret, secret: true, reload: .restart, "GenAuth app secret"),
            .choice(
                "genauth.header_family", \.dispatcher.genauth.headerFamily, reload: .restart,
                "genauth (x-genauth-app-id) or authing (x-authing-app-id)"),
            .seconds(
                "genauth.timeout", \.dispatcher.genauth.timeout, in: 0.1...120, reload: .restart, "seconds one API call may take"),
            // Restart: the writer stamps every sent job's window with it, and in-flight jobs must end
            // under the window their reservation was granted with.
            ConfigSetting(
                "throttle.window", reload: .restart, "seconds between two SMS to one phone on one channel",
                value: \.dispatcher.admission.throttleWindow,
                read: { values, config in
                    try values.int("throttle.window", in: 1...86_400).map {
                        config.dispatcher.admission.throttleWindow = .seconds($0)
                    }
                }, show: { String(Int($0.dispatcher.admission.throttleWindow.seconds)) }),
            .int(
                "concurrency", \.dispatcher.claims.concurrency, in: 1...4096, reload: .restart, "API calls in flight per daemon"),
            .seconds(
                "poll_interval", \.dispatcher.claims.pollInterval, in: 0.05...3600, reload: .restart,
                "seconds between polls when no notification arrives"),
            .seconds(
                "retry.base_delay", \.dispatcher.triage.backoff.base, in: 0.01...3600, reload: .live,
                "seconds before the first retry; doubles each attempt"),
            .seconds(
                "retry.max_delay", \.dispatcher.triage.backoff.maximum, in: 0.01...86_400, reload: .live,
                "longest wait between two attempts, seconds"),
            .seconds(
                "heartbeat.interval", \.dispatcher.heartbeat.interval, in: 0.1...3600, reload: .restart,
                "seconds between heartbeats (worker row, lease extension)"),
            .seconds(
                "lease.duration", \.dispatcher.claims.lease, in: 1...86_400, reload: .restart,
                "seconds a claimed job stays leased without a heartbeat"),
            .seconds(
                "lease.rescue_interval", \.dispatcher.rescuer.interval, in: 0.1...3600, reload: .restart,
                "seconds between checks for expired leases"),
            .seconds(
                "shutdown.grace", \.dispatcher.claims.shutdownGrace, in: 0...3600, reload: .restart,
                "seconds a shutdown waits for API calls in flight"),
            // The fraud guard: the reservation reads these for each batch, the fraud watch for each round.
            .choice(
                "fraud.mode", \.dispatcher.admission.fraud.mode, reload: .live,
                "enforce, monitor (decide and count, stop nothing) or off"),
            .int(
                "fraud.per_ip_hour", \.dispatcher.admission.fraud.perIPHour, in: 0...1_000_000, reload: .live,
                "SMS per client_ip (IPv6: per /64) per rolling hour, all channels (0: none)"),
            .int(
                "fraud.per_user_hour", \.dispatcher.admission.fraud.perUserHour, in: 0...1_000_000, reload: .live,
                "SMS per user_ref per rolling hour (0: none)"),
            .int(
                "fraud.per_prefix_hour", \.dispatcher.admission.fraud.perPrefixHour, in: 0...1_000_000, reload: .live,
                "SMS per number prefix (the number less its last 4 digits, with its country code) per rolling hour (0: none)"),
            .int(
                "fraud.per_country_hour", \.dispatcher.admission.fraud.perCountryHour, in: 0...100_000_000, reload: .live,
                "SMS per country per rolling hour: a ceiling for any one country (0: none)"),
            .number(
                "fraud.anomaly_factor", \.dispatcher.admission.fraud.anomalyFactor, in: 1...1000, reload: .live,
                "a prefix or country is anomalous above this many times its baseline (10-minute window)"),
            .int(
                "fraud.anomaly_min_requests", \.dispatcher.admission.fraud.anomalyMinRequests, in: 1...1_000_000, reload: .live,
                "requests in 10 minutes below which no prefix or country is anomalous"),
            .number(
                "fraud.anomaly_max_verified", \.dispatcher.admission.fraud.anomalyMaxVerified, in: 0...1, reload: .live,
                "share of codes verified (sms.mark_verified) below which anomalous traffic is blocked (0: no anomaly blocks)"),
            ConfigSetting(
                "fraud.block_minutes", reload: .live,
                "minutes an anomaly block lasts after the traffic was last seen anomalous",
                value: \.dispatcher.admission.fraud.blockDuration,
                read: { values, config in
                    try values.int("fraud.block_minutes", in: 1...10_080).map {
                        config.dispatcher.admission.fraud.blockDuration = .seconds($0 * 60)
                    }
                }, show: { String(Int($0.dispatcher.admission.fraud.blockDuration.seconds / 60)) }),
            .number(
                "fraud.baseline_hours", \.dispatcher.admission.fraud.baselineHours, in: 1...720, reload: .live,
                "the baselines' time constant, and the history a prefix or country needs before it can be blocked"),
            .int(
                "fraud.trust_verified_days", \.dispatcher.admission.fraud.trustVerifiedDays, in: 0...365, reload: .live,
                "a user_ref that verified a code within this many days passes anomaly blocks (0: none)"),
            .seconds(
                "fraud.evaluate_interval", \.dispatcher.fraudWatch.interval, in: 1...3600, reload: .restart,
                "seconds between the cluster's anomaly evaluations (and the guard's retention rounds)"),
            .choice("log.level", \.logLevel, reload: .live, "trace, debug, info, notice, warning, error or critical"),
            .optionalString(
                "worker.id", \.dispatcher.workerID, unset: "(host-pid-random)", reload: .restart,
                "this daemon's name in locked_by and sms.workers"),
            .bool(
                "countries.international", \.dispatcher.triage.rules.international, reload: .live,
                "send to numbers outside mainland China (+86)"),
            ConfigSetting(
                "countries.allow", reload: .live,
                "with international: the country codes allowed, e.g. [\"+852\", \"+1\"]; empty: all",
                value: \.dispatcher.triage.rules.allowedCountryCodes,
                read: { values, config in
                    if let codes = try values.stringArray("countries.allow") {
                        for code in codes
                        where
                            !(code.hasPrefix("+") && (2...5).contains(code.count)
                            && code.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber }))
                        {
                            throw ConfigError(key: "countries.allow", "\"\(code)\" is not a country code like +852")
                        }
                        config.dispatcher.triage.rules.allowedCountryCodes = codes
                    }
                }, show: { "[" + $0.dispatcher.triage.rules.allowedCountryCodes.joined(separator: ", ") + "]" }),
            .int(
                "caps.per_phone_hour", \.dispatcher.admission.capPerPhoneHour, in: 0...1000, reload: .live,
                "SMS per phone across all channels per rolling hour (0: no cap)"),
            .int(
                "caps.per_phone_day", \.dispatcher.admission.capPerPhoneDay, in: 0...10_000, reload: .live,
                "SMS per phone across all channels per rolling day (0: no cap)"),
            .number(
                "rate_limit.requests_per_second", \.dispatcher.admission.rateLimit, in: 0...100_000, reload: .live,
                "API requests per second for the whole cluster (0: no limit)"),
            // Restart: the lease rescuer holds it too, and a job's crash semantics must not change
            // between its call and its rescue.
            .choice(
                "delivery.policy", \.dispatcher.triage.policy, reload: .restart,
                "at-least-once or at-most-once: what a crash during an API call means"),
            .int(
                "breaker.failure_threshold", \.dispatcher.breaker.threshold, in: 0...10_000, reload: .live,
                "consecutive transient API failures that open the circuit breaker (0: off)"),
            .seconds(
                "breaker.cool_down", \.dispatcher.breaker.coolDown, in: 0.1...3600, reload: .live,
                "seconds the breaker stays open before one probe call"),
            .optionalString(
                "genauth.access_key_id", \.accessKeyID, unset: "(unset: app-id mode)", reload: .restart,
                "management-token mode: access key id"),
            .optionalString(
                "genauth.access_key_secret", \.accessKeySecret, secret: true, reload: .restart,
                "management-token mode: access key secret"),
            ConfigSetting(
                "retention.max_age_days", reload: .restart,
                "finished jobs and their attempts older than this are deleted (0: keep)",
                value: \.dispatcher.retention.maxAge,
                read: { values, config in
                    try values.int("retention.max_age_days", in: 0...3650).map {
                        config.dispatcher.retention.maxAge = .seconds($0 * 86_400)
                    }
                }, show: { String(Int($0.dispatcher.retention.maxAge.seconds / 86_400)) }),
            .int(
                "retention.batch_size", \.dispatcher.retention.batchSize, in: 1...100_000, reload: .restart,
                "rows deleted per statement"),
            .seconds(
                "retention.interval", \.dispatcher.retention.interval, in: 1...86_400, reload: .restart,
                "seconds between retention runs (every daemon runs them, in small deletes)"),
            ConfigSetting(
                "metrics.listen", reload: .restart,
                "host:port of the Prometheus endpoint, e.g. 127.0.0.1:9464 (unset: off)",
                value: \.metricsListen,
                read: { values, config in
                    if let listen = try values.string("metrics.listen"), !listen.isEmpty {
                        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                            (1...65535).contains(port), colon != listen.startIndex
                        else {
                            throw ConfigError(key: "metrics.listen", "must be host:port, e.g. 127.0.0.1:9464, not \"\(listen)\"")
                        }
                        config.metricsListen = listen
                    }
                }, show: { $0.metricsListen ?? "(off)" }),
        ]
    }

    /// `channels.defaults.*` applies to every channel; `channels.CHANNEL_X.*` overrides it for one. A
    /// channel's key falls back to the defaults' key, so each is read (and range-checked) where it is set.
    private static var channelKeys: [ConfigSetting] {
        (["defaults"] + Channel.allCases.map(\.rawValue)).flatMap { scope -> [ConfigSetting] in
            let channel = Channel(rawValue: scope)
            func key<T: Equatable>(
                _ field: String, _ help: String, _ path: WritableKeyPath<ChannelRule, T>,
                read: @escaping (RawValues, String) throws -> T?, show: @escaping (T) -> String
            ) -> ConfigSetting {
                let name = "channels.\(scope).\(field)"
                let fallback = "channels.defaults.\(field)"
                // Every channel rule is live: triage reads the rules afresh for each batch, and the
                // claim loop publishes changed priorities and TTLs to sms.channel_settings.
                guard let channel else {
                    // The defaults' own key is read (and checked) once, by every channel falling back to it.
                    return ConfigSetting(
                        fallback: name, reload: .live, help, read: { values, _ in _ = try read(values, name) },
                        show: { _ in "(per channel)" })
                }
                let rule: WritableKeyPath<DaemonConfiguration, ChannelRule> = \.dispatcher.triage.rules[channel]
                return ConfigSetting(
                    name, reload: .live, help, value: rule.appending(path: path),
                    read: { values, config in
                        if let value = try read(values, name) ?? read(values, fallback) {
                            config.dispatcher.triage.rules[channel][keyPath: path] = value
                        }
                    }, show: { config in show(config.dispatcher.triage.rules[channel][keyPath: path]) })
            }
            return [
                key(
                    "enabled", "false: the channel's jobs are rejected", \.enabled,
                    read: { try $0.bool($1) }, show: { String($0) }),
                key(
                    "priority", "priority for jobs inserted with priority 0", \.priority,
                    read: { try $0.int($1, in: Int(Int16.min)...Int(Int16.max)) }, show: { String($0) }),
                key(
                    "ttl", "seconds after created_at a job expires instead of being sent (0: never)", \.ttl,
                    read: { try $0.seconds($1, in: 0...604_800) }, show: { String($0.seconds) }),
                key(
                    "max_attempts", "cap on a job's max_attempts", \.maxAttempts,
                    read: { try $0.int($1, in: 1...100).map { Optional($0) } }, show: { $0.map(String.init) ?? "(the job's)" }),
                key(
                    "coalesce", "send only the newest of several jobs for one phone and channel", \.coalesce,
                    read: { try $0.bool($1) }, show: { String($0) }),
            ]
        }
    }
}
