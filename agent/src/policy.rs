//! The policy in force, and the built-in baseline it starts from.
//!
//! Low in the graph on purpose: the checks, the daemon, the status board and
//! the command line all need to say "this policy, from there" without
//! depending on each other.

use palisade_shared::Policy;

/// The baseline policy (`config/policy.toml`), built in so `check` works and
/// the daemon has rules before any collector has served one.
pub const BASELINE_POLICY: &str = include_str!("../../config/policy.toml");

/// The policy in force and how it got here.
#[derive(Debug, Clone)]
pub struct CurrentPolicy {
    pub policy: Policy,
    /// The ETag the collector gave it, for the next conditional fetch.
    pub etag: Option<String>,
    /// Where it came from, for logs and status.
    pub source: &'static str,
}

/// The built-in baseline, parsed.
pub fn baseline() -> CurrentPolicy {
    CurrentPolicy {
        policy: Policy::parse(BASELINE_POLICY).unwrap_or_else(|errors| {
            // The baseline is compiled in and covered by tests; reaching this
            // is a build defect, not bad input.
            panic!("the built-in baseline policy is invalid: {errors}")
        }),
        etag: None,
        source: "built-in baseline",
    }
}
