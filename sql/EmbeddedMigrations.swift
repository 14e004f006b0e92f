/// The migrations of `sql/migrations/`, compiled into the binary by SwiftPM (`.embedInCode` in
/// Package.swift): `sms-dispatcher migrate` applies exactly what this build was written against, wherever
/// it runs from. SwiftPM names each file's bytes `PackageResources._NNN_name_sql` (the first digit made an underscore), and a manifest cannot
/// list a folder, so the list is written out here and in Package.swift; `EmbeddedMigrationsTests` fails
/// when either misses a file of the folder.
package enum EmbeddedMigrations {
    /// File name and contents, in version order.
    package static let files: [(name: String, bytes: [UInt8])] = [
        ("0001_jobs.sql", PackageResources._001_jobs_sql),
        ("0002_channel_rules.sql", PackageResources._002_channel_rules_sql),
        ("0003_delivery.sql", PackageResources._003_delivery_sql),
        ("0004_operations.sql", PackageResources._004_operations_sql),
        ("0005_autovacuum.sql", PackageResources._005_autovacuum_sql),
        ("0006_claim.sql", PackageResources._006_claim_sql),
        ("0007_truth.sql", PackageResources._007_truth_sql),
        ("0008_producers.sql", PackageResources._008_producers_sql),
        ("0009_roles.sql", PackageResources._009_roles_sql),
        ("0010_fraud.sql", PackageResources._010_fraud_sql),
        ("0011_footprint.sql", PackageResources._011_footprint_sql),
        ("0012_function_plans.sql", PackageResources._012_function_plans_sql),
        ("0013_lean_reservation.sql", PackageResources._013_lean_reservation_sql),
        ("0014_truth_over_time.sql", PackageResources._014_truth_over_time_sql),
    ]
}
