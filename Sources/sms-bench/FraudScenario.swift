import ArgumentParser
import Foundation
import PostgresClient
import SMSJobStore
import SMSModel

/// SplitMix64: a tiny seeded generator, so every run of the fraud scenario simulates the same traffic.
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }

    mutating func chance(_ p: Double) -> Bool { unit() < p }

    mutating func digits(_ count: Int) -> String {
        String((0..<count).map { _ in Character(Unicode.Scalar(UInt8(48 + next() % 10))) })
    }

    mutating func pick<T>(_ values: [T]) -> T { values[Int(next() % UInt64(values.count))] }

    /// A public-looking IPv4 address (never 10/8, 127/8 or the documentation ranges the attacks use).
    mutating func ipv4() -> String {
        var first = int(1...223)
        while first == 10 || first == 127 || first == 100 || first == 198 || first == 203 { first = int(1...223) }
        return "\(first).\(int(0...255)).\(int(0...255)).\(int(1...254))"
    }

    /// Exponential waiting time for a Poisson process of `rate` per second.
    mutating func exponential(rate: Double) -> Double { -log(1 - unit()) / rate }
}

extension Bench {
    enum FraudSource: Int, CaseIterable {
        case legit, premium, walker, flood
    }

    /// One simulated request for a code: decided by `sms.fraud_decide` in its 10-second tick.
    struct SimulatedRequest {
        /// Seconds since the simulation's start (the next UTC midnight).
        var time: Double
        var phoneKey: String
        var ip: String?
        var user: String?
        var source: FraudSource
        /// Seconds after the decision at which the code is entered, if it was let through; nil: never.
        var verifyAfter: Double?
    }

    struct FraudTally {
        var attempted = 0
        var blocked = 0
        /// From the attack's sixth minute on.
        var lateAttempted = 0
        var lateBlocked = 0
        var verified = 0
        var firstBlock: Double?
        var rules: [String: Int] = [:]
        var byCountry: [String: (attempted: Int, blocked: Int)] = [:]
    }

    struct FraudAttack {
        var source: FraudSource
        var name: String
        var setup: String
        /// Seconds since the simulation's start.
        var start: Double
        var end: Double
    }

    struct FraudFigures {
        var rows: [[String]]
    }

    /// Mobile numbers of the legitimate users' countries, random within each country's ranges (so
    /// their prefixes, the number less its last 4 digits, are as spread as real ones): `+CC national`.
    static let legitCountries: [(code: String, share: Double, make: @Sendable (inout SplitMix64) -> String)] = [
        ("+86", 0.50, { r in "1" + String(r.int(3...9)) + r.digits(9) }),
        ("+1", 0.20, { r in String(r.int(2...9)) + String(r.int(0...8)) + r.digits(1) + String(r.int(2...9)) + r.digits(6) }),
        ("+44", 0.10, { r in "7" + String(r.int(4...9)) + r.digits(8) }),
        (
            "+49", 0.08,
            { r in
                switch r.int(0...2) {
                case 0: return "15" + r.pick(["1", "2", "7", "9"]) + r.digits(8)
                case 1: return "16" + r.pick(["0", "2", "3"]) + r.digits(7 + r.int(0...1))
                default: return "17" + r.digits(1) + r.digits(7 + r.int(0...1))
                }
            }
        ),
        ("+91", 0.07, { r in String(r.int(6...9)) + r.digits(9) }),
        ("+62", 0.05, { r in "8" + r.pick(["1", "5", "7", "8", "9"]) + r.digits(r.int(8...10)) }),
    ]

    static func legitPhone(_ random: inout SplitMix64) -> String {
        var roll = random.unit()
        for country in legitCountries {
            roll -= country.share
            if roll < 0 { return country.code + " " + country.make(&random) }
        }
        return "+86 1" + String(random.int(3...9)) + random.digits(9)
    }

    static func mobile62(_ random: inout SplitMix64) -> String {
        "+62 " + legitCountries.first { $0.code == "+62" }!.make(&random)
    }

    /// Two simulated days of the real guard SQL (`DecideFraud`, `RecordVerifications`, `EvaluateFraud`,
    /// the daemon's defaults) on a fresh database: day 1 legitimate traffic (the baselines warm up),
    /// day 2 the same plus three pumping attacks. No daemon: the statements run on the simulated clock.
    func fraudScenario(admin: String) async throws -> FraudFigures {
        let wallStart = ContinuousClock.now
        let database = try await freshDatabase(admin: admin)
        let db = try await PostgresConnection.connect(database)
        defer { Task { await db.close() } }
        let settings = FraudSettings()  // the daemon's defaults (fraud.*)
        let day = 86_400.0
        // The next UTC midnight: every p_now is in the future of the real clock, so nothing the
        // migration or the database's own clock wrote is newer than the simulation.
        let t0 = (floor(Date().timeIntervalSince1970 / day) + 1) * day
        var random = SplitMix64(seed: 14)

        // Legitimate users: a pool of 25,000 accounts, each with its phone and home address, plus
        // one-off sign-ups; 2% of sessions come through 20 shared addresses (carrier NAT, offices).
        let poolSize = 25_000
        let pool: [(user: String, phone: String, ip: String)] = (0..<poolSize).map { index in
            ("u\(index)", Self.legitPhone(&random), random.ipv4())
        }
        let shared = (0..<20).map { index in "100.64.\(index).\(random.int(1...254))" }
        var requests: [SimulatedRequest] = []
        let sessionsPerDay = 47_600  // with the 5% of sessions that ask twice: ~50,000 codes a day
        var signups = 0
        for dayIndex in 0..<2 {
            for _ in 0..<sessionsPerDay {
                // Diurnal: trough 0.3× at 04:00 UTC, peak 1.7× at 16:00 (rejection sampling).
                var second: Double
                repeat {
                    second = random.uniform(0, day)
                } while random.uniform(0, 1.7) > 1 - 0.7 * cos(2 * .pi * (second / 3600 - 4) / 24)
                let time = Double(dayIndex) * day + second
                var user: String
                var phone: String
                var ip: String
                if random.chance(0.7) {
                    (user, phone, ip) = random.pick(pool)
                } else {
                    signups += 1
                    (user, phone, ip) = ("n\(signups)", Self.legitPhone(&random), random.ipv4())
                }
                if random.chance(0.02) { ip = random.pick(shared) }
                let verifies = random.chance(0.9)
                let delay = random.uniform(5, 60)
                if random.chance(0.05) {
                    // Asked twice within a few minutes: the first code is never entered, the second may be.
                    requests.append(
                        SimulatedRequest(time: time, phoneKey: phone, ip: ip, user: user, source: .legit, verifyAfter: nil))
                    requests.append(
                        SimulatedRequest(
                            time: time + random.uniform(30, 240), phoneKey: phone, ip: ip, user: user,
                            source: .legit, verifyAfter: verifies ? delay : nil))
                } else {
                    requests.append(
                        SimulatedRequest(
                            time: time, phoneKey: phone, ip: ip, user: user, source: .legit,
                            verifyAfter: verifies ? delay : nil))
                }
            }
        }
        let day1Indonesia = requests.filter { $0.time < day && $0.phoneKey.hasPrefix("+62 ") }.count
        let indonesiaHourly = Double(day1Indonesia) / 24

        let attacks = [
            FraudAttack(
                source: .premium, name: "attack 1: premium prefixes",
                setup:
                    "03:00-04:00, 3 new prefixes (+44 701234, +371 8123, +53 5123), sequential numbers, 20,000 rotating IPs, no or random user_ref, 2/s, never verified",
                start: day + 3 * 3600, end: day + 4 * 3600),
            FraudAttack(
                source: .walker, name: "attack 2: one IP walking",
                setup: "10:00-11:00, one IP and one user_ref, sequential +49 numbers, 1/s, never verified",
                start: day + 10 * 3600, end: day + 11 * 3600),
            FraudAttack(
                source: .flood, name: "attack 3: country flood",
                setup: String(
                    format:
                        "15:00-16:00, +62 at 20× its day-1 hourly rate (%.0f/h → %.0f/h), random numbers, IPs used 1-3 times, new user_refs, 1%% verified",
                    indonesiaHourly, 20 * indonesiaHourly),
                start: day + 15 * 3600, end: day + 16 * 3600),
        ]
        // Attack 1: premium-rate ranges, numbers in sequence, from rotating addresses.
        let attackerIPs = (0..<20_000).map { _ in random.ipv4() }
        let premium = ["+44 701234", "+371 8123", "+53 5123"]
        for index in 0..<7_200 {
            requests.append(
                SimulatedRequest(
                    time: attacks[0].start + Double(index) * 0.5 + random.uniform(0, 0.4),
                    phoneKey: premium[index % 3] + String(format: "%04d", index / 3),
                    ip: random.pick(attackerIPs), user: random.chance(0.5) ? nil : "bot\(random.next() % 1_000_000)",
                    source: .premium, verifyAfter: nil))
        }
        // Attack 2: one client walking through a country's numbers.
        for index in 0..<3_600 {
            requests.append(
                SimulatedRequest(
                    time: attacks[1].start + Double(index), phoneKey: "+49 152" + String(format: "%08d", 34_000_000 + index),
                    ip: "198.51.100.23", user: "acct-4242", source: .walker, verifyAfter: nil))
        }
        // Attack 3: distributed addresses push one small country to 20× its baseline.
        var time = attacks[2].start
        var ip = random.ipv4()
        var ipUses = 0
        while true {
            time += random.exponential(rate: 20 * indonesiaHourly / 3600)
            if time >= attacks[2].end { break }
            if ipUses == 0 {
                ip = random.ipv4()
                ipUses = random.int(1...3)
            }
            ipUses -= 1
            requests.append(
                SimulatedRequest(
                    time: time, phoneKey: Self.mobile62(&random), ip: ip, user: "x\(random.next() % 100_000_000)",
                    source: .flood, verifyAfter: random.chance(0.01) ? random.uniform(5, 60) : nil))
        }
        requests.sort { $0.time < $1.time }

        // Simulated time, 10 s ticks: the verifications due, the requests of the tick in one DecideFraud
        // (now = the tick's end), and every 30 s an evaluation round, as the daemon's fraud watch does.
        var tallies: [FraudSource: FraudTally] = [:]
        var day1Legit = FraudTally()
        var pending: [Int: [(String, String?)]] = [:]
        var newBlocks: [(time: Double, scope: String, key: String, reason: String)] = []
        var calls = (decide: 0, verify: 0, evaluate: 0)
        var spent = (decide: Duration.zero, verify: Duration.zero, evaluate: Duration.zero)
        var cursor = 0
        try await db.run(EvaluateFraud(settings: settings, now: t0))
        let ticks = Int(2 * day / 10)
        for tick in 0..<ticks {
            let now = Double(tick + 1) * 10
            if let due = pending.removeValue(forKey: tick), !due.isEmpty {
                let started = ContinuousClock.now
                try await db.run(RecordVerifications(phoneKeys: due.map(\.0), userRefs: due.map(\.1), now: t0 + now))
                spent.verify += ContinuousClock.now - started
                calls.verify += 1
            }
            let first = cursor
            while cursor < requests.count, requests[cursor].time < now { cursor += 1 }
            if cursor > first {
                let batch = requests[first..<cursor]
                let started = ContinuousClock.now
                let decisions = try await db.run(
                    DecideFraud(
                        requests: batch.map { DecideFraud.Request(phoneKey: $0.phoneKey, clientIP: $0.ip, userRef: $0.user) },
                        settings: settings, now: t0 + now))
                calls.decide += 1
                spent.decide += ContinuousClock.now - started
                guard decisions.count == batch.count else {
                    throw ValidationError("sms.fraud_decide answered \(decisions.count) of \(batch.count) requests")
                }
                for (request, decision) in zip(batch, decisions) {
                    let blocked = decision.decision == .blocked
                    let country = String(request.phoneKey.split(separator: " ")[0])
                    func count(_ tally: inout FraudTally, late: Bool) {
                        tally.attempted += 1
                        if late { tally.lateAttempted += 1 }
                        var perCountry = tally.byCountry[country] ?? (0, 0)
                        perCountry.attempted += 1
                        if blocked {
                            tally.blocked += 1
                            perCountry.blocked += 1
                            if late { tally.lateBlocked += 1 }
                            if tally.firstBlock == nil { tally.firstBlock = now }
                        }
                        tally.byCountry[country] = perCountry
                        if let rule = decision.rule { tally.rules[rule.rawValue, default: 0] += 1 }
                    }
                    if request.source == .legit && request.time < day {
                        count(&day1Legit, late: false)
                    } else {
                        let attack = attacks.first { $0.source == request.source }
                        count(
                            &tallies[request.source, default: FraudTally()],
                            late: attack.map { request.time >= $0.start + 300 } ?? true)
                    }
                    if !blocked, let after = request.verifyAfter {
                        // Entered after a delay: recorded in the tick that ends at or after that moment.
                        let bucket = Int(((now + after) / 10).rounded(.up)) - 1
                        pending[bucket, default: []].append((request.phoneKey, request.user))
                        if request.time >= day { tallies[request.source, default: FraudTally()].verified += 1 }
                    }
                }
            }
            if tick % 3 == 2 {
                let started = ContinuousClock.now
                defer { spent.evaluate += ContinuousClock.now - started }
                for change in try await db.run(EvaluateFraud(settings: settings, now: t0 + now)) where change.isNew {
                    newBlocks.append((now, change.block.scope.rawValue, change.block.key, change.block.reason))
                }
                // The fraud watch's round goes on with the guard's retention (every 5 minutes at most).
                try await db.run(PruneFraudState(settings: settings, now: t0 + now))
                calls.evaluate += 1
            }
        }
        let wall = (ContinuousClock.now - wallStart).seconds

        func clock(_ seconds: Double) -> String {
            let inDay = Int(seconds) % Int(day)
            return String(format: "day %d %02d:%02d:%02d", Int(seconds / day) + 1, inDay / 3600, inDay / 60 % 60, inDay % 60)
        }
        func percent(_ part: Int, _ whole: Int) -> String { String(format: "%.1f%%", Double(part) / Double(max(whole, 1)) * 100) }
        func preciseFraction(_ part: Int, _ whole: Int) -> String {
            String(format: "%.2f%%", Double(part) / Double(max(whole, 1)) * 100)
        }
        func rules(_ tally: FraudTally) -> String {
            tally.rules.isEmpty
                ? "none" : tally.rules.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }

        print(
            "fraud: 2 simulated days from \(Date(timeIntervalSince1970: t0)) in \(String(format: "%.1f", wall)) s of wall time: "
                + "\(calls.decide) DecideFraud, \(calls.verify) RecordVerifications, \(calls.evaluate) EvaluateFraud calls "
                + String(format: "(%.1f / %.1f / %.1f s); ", spent.decide.seconds, spent.verify.seconds, spent.evaluate.seconds)
                + "\(requests.count) requests, \(signups) sign-ups, pool of \(poolSize) users")
        var rows: [[String]] = []
        for attack in attacks {
            let tally = tallies[attack.source] ?? FraudTally()
            let firstBlock =
                tally.firstBlock.map { String(format: "first block after %.0f s", $0 - attack.start) } ?? "never blocked"
            print(
                "fraud: \(attack.name) (\(attack.setup)): blocked \(tally.blocked) / \(tally.attempted) (\(percent(tally.blocked, tally.attempted))), "
                    + "after the first 5 min \(tally.lateBlocked) / \(tally.lateAttempted) (\(percent(tally.lateBlocked, tally.lateAttempted))), "
                    + "\(tally.attempted - tally.blocked) sent, \(tally.verified) verified, \(firstBlock); rules: \(rules(tally))"
            )
            rows.append([
                "fraud: " + attack.name, attack.setup,
                "\(tally.blocked) / \(tally.attempted) SMS blocked (\(percent(tally.blocked, tally.attempted)))",
                "after the first 5 min: \(percent(tally.lateBlocked, tally.lateAttempted)); \(firstBlock); rules: \(rules(tally))",
            ])
        }
        let legit = tallies[.legit] ?? FraudTally()
        let countries = legit.byCountry.sorted { $0.value.attempted > $1.value.attempted }
            .map { "\($0.key) \($0.value.blocked)/\($0.value.attempted)" }.joined(separator: ", ")
        print(
            "fraud: legitimate day 2: \(legit.attempted) codes, blocked \(legit.blocked) (\(preciseFraction(legit.blocked, legit.attempted))), "
                + "delayed 0 (the guard never defers: a code passes or is stopped), \(legit.verified) verified (\(percent(legit.verified, legit.attempted))); "
                + "rules: \(rules(legit)); blocked/codes per country: \(countries)")
        print(
            "fraud: legitimate day 1 (warm-up, no baselines yet): \(day1Legit.attempted) codes, blocked \(day1Legit.blocked); rules: \(rules(day1Legit))"
        )
        var fired: [String: Int] = [:]
        for tally in tallies.values { for (rule, count) in tally.rules { fired[rule, default: 0] += count } }
        print(
            "fraud: rules fired on day 2 (decisions): "
                + (fired.isEmpty
                    ? "none" : fired.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        print("fraud: anomaly blocks made (\(newBlocks.count)):")
        for block in newBlocks {
            print("  \(clock(block.time)) \(block.scope) \(block.key): \(block.reason)")
        }
        let hit = legit.byCountry.filter { $0.value.blocked > 0 }.sorted { $0.value.blocked > $1.value.blocked }
            .map { "\($0.key) \($0.value.blocked)/\($0.value.attempted)" }.joined(separator: ", ")
        rows.append([
            "fraud: legitimate",
            "day 2: \(legit.attempted) codes, 6 countries, \(percent(legit.verified, legit.attempted)) verified",
            "\(legit.blocked) / \(legit.attempted) codes blocked (\(preciseFraction(legit.blocked, legit.attempted)))",
            "delayed 0 (the guard never defers); rules: \(rules(legit)); blocked per country: "
                + (hit.isEmpty ? "none" : hit) + "; day 1: \(day1Legit.blocked) / \(day1Legit.attempted) blocked",
        ])
        var blockList = newBlocks.prefix(8).map { "\($0.scope) \($0.key) at \(clock($0.time).dropFirst(6))" }.joined(
            separator: ", ")
        if newBlocks.count > 8 { blockList += " and \(newBlocks.count - 8) more" }
        rows.append([
            "fraud: run", "2 simulated days, the guard's SQL with the defaults, 10 s ticks, evaluation every 30 s",
            String(format: "%.1f s wall", wall),
            "\(calls.decide + calls.verify + calls.evaluate) statements ("
                + String(
                    format: "DecideFraud %.0f s, RecordVerifications %.0f s, EvaluateFraud %.0f s", spent.decide.seconds,
                    spent.verify.seconds, spent.evaluate.seconds)
                + "); anomaly blocks: " + (blockList.isEmpty ? "none" : blockList),
        ])
        return FraudFigures(rows: rows)
    }
}
