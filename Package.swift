// swift-tools-version: 6.2
import PackageDescription

/// The migrations, in order: compiled into the binary (`SMSSchema`), never read from the current
/// directory. A new migration is added here too; `EmbeddedMigrationsTests` fails until it is.
let migrations = [
    "0001_jobs.sql", "0002_channel_rules.sql", "0003_delivery.sql", "0004_operations.sql",
    "0005_autovacuum.sql", "0006_claim.sql", "0007_truth.sql", "0008_producers.sql", "0009_roles.sql",
    "0010_fraud.sql", "0011_footprint.sql", "0012_function_plans.sql", "0013_lean_reservation.sql",
    "0014_truth_over_time.sql",
]

let package = Package(
    name: "sms-dispatcher",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sms-dispatcher", targets: ["sms-dispatcher"]),
        .executable(name: "genauth-sandbox", targets: ["genauth-sandbox"]),
        .executable(name: "sms-bench", targets: ["sms-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.24.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.0.0", traits: [.defaults, "YAML"]),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // libpq, found through pkg-config; Debian's libpq-dev provides it.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // The one Swift wrapper that owns every PGconn and PGresult.
        .target(
            name: "PostgresClient",
            dependencies: [
                "CLibPQ",
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The model: channels and their rules, job states, phones, claimed jobs, outcomes, the delivery
        // policy. No dependencies: every other module speaks in these types.
        .target(name: "SMSModel"),
        // The GenAuth client: its configuration, the request, the answer reader, the one classification
        // of an answer, and the HTTP/1 connection pool (bookkeeping as a pure state machine). It depends
        // on nothing of its users, as async-http-client does.
        .target(
            name: "GenAuth",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        // The schema's SQL: `sql/migrations/` embedded in the code (the files as applied, in order), and
        // beside them `sql/schema/`, today's schema one file per object (not compiled; the integration
        // tests check it against the migrations).
        .target(
            name: "SMSSchema",
            path: "sql",
            exclude: ["schema"],
            sources: ["EmbeddedMigrations.swift"],
            resources: migrations.map { .embedInCode("migrations/\($0)") }
        ),
        // The job store: one type per SQL statement (its SQL and its bindings), migrations, advisory
        // locks, the status report.
        .target(
            name: "SMSJobStore",
            dependencies: [
                "SMSModel",
                "SMSSchema",
                "PostgresClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            // A statement too long to read inside Swift keeps its SQL in a file beside its type.
            resources: [.embedInCode("Statements/CompleteJobs.sql")]
        ),
        // The engine: small services the `Dispatcher` wires together (claim loop, triage, admission,
        // call sender, outcome writer, wake source, heartbeat, lease rescuer, retention).
        .target(
            name: "SMSEngine",
            dependencies: [
                "SMSModel",
                "GenAuth",
                "SMSJobStore",
                "PostgresClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Configuration: every key declared once (name, help, range, where it goes), read through
        // swift-configuration from the YAML file, the environment and systemd credentials.
        .target(
            name: "SMSConfiguration",
            dependencies: [
                "SMSModel",
                "GenAuth",
                "SMSEngine",
                "PostgresClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // `GET /metrics` for Prometheus: the only module that depends on Hummingbird.
        .target(
            name: "SMSMetricsEndpoint",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The fake GenAuth, as a library so the executable stays a few lines.
        .target(
            name: "GenAuthSandbox",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The command line: one file per subcommand.
        .executableTarget(
            name: "sms-dispatcher",
            dependencies: [
                "SMSModel",
                "GenAuth",
                "SMSJobStore",
                "SMSEngine",
                "SMSConfiguration",
                "SMSMetricsEndpoint",
                "PostgresClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "genauth-sandbox",
            dependencies: [
                "GenAuthSandbox",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What the tests and the bench share: child processes, throwaway databases, free ports, waiting
        // for a condition. Not part of the daemon.
        .target(
            name: "SMSTestSupport",
            dependencies: [
                "PostgresClient",
                "SMSJobStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `make bench`: drives the release daemon and sandbox against a throwaway PostgreSQL and prints
        // figures; one file per scenario.
        .executableTarget(
            name: "sms-bench",
            dependencies: [
                "PostgresClient",
                "SMSModel",
                "GenAuth",
                "SMSJobStore",
                "SMSTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // No PostgreSQL, no processes, no sockets: pure types, one file per type.
        .testTarget(
            name: "UnitTests",
            dependencies: [
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                "SMSModel",
                "GenAuth",
                "SMSJobStore",
                "SMSEngine",
                "SMSConfiguration",
                "PostgresClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // PostgreSQL, the sandbox over HTTP, real processes and signals.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "SMSModel",
                "GenAuth",
                "SMSJobStore",
                "SMSEngine",
                "SMSConfiguration",
                "PostgresClient",
                "GenAuthSandbox",
                "SMSTestSupport",
                "sms-dispatcher",
                "genauth-sandbox",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
