/// `at-least-once`: a job whose call may have gone out when its worker died is retried (a duplicate is
/// possible, and bounded: see the README). `at-most-once`: it ends `failed`, saying delivery is unknown.
package enum DeliveryPolicy: String, Sendable, CaseIterable {
    case atLeastOnce = "at-least-once"
    case atMostOnce = "at-most-once"
}
