/// The schema version this build needs: the highest `sql/NNNN_*.sql` it was written against.
public enum SchemaVersion {
    public static let required = 14
}
