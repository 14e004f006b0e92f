/// The schema version this build needs: the highest migration compiled into it.
package enum SchemaVersion {
    package static let required = Migrator.embedded.latestVersion
}
