//! The environment of tests that need a live ScyllaDB or Neo4j.
//!
//! A ScyllaDB test is compiled as ignored, with its reason, unless
//! `SCYLLA_URI` was set when it was built: the crate's `build.rs` then sets
//! `cfg(scylla_live)` and the test carries `#[cfg_attr(not(scylla_live),
//! ignore = "...")]`. A runner thus lists it as skipped instead of passing
//! it without running, and runs it whenever the variable is set. Once it
//! runs, nothing makes it skip: an unset variable or an unreachable server
//! fails it.
//!
//! The Neo4j tests are not gated at build time: they run against the
//! Neo4j that `NEO4J_URI` names, or else against ArcadeDB's Bolt endpoint
//! ([`crate::arcadedb`]).

/// The value of `var`, the address of the live server this test runs
/// against. Panics when it is unset (a binary built with it set and run
/// without it, or an ignored test forced to run): a test asked to run
/// must not pass without running.
pub fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{var} is not set, and this test needs the live server it names: set it and run \
             again (see README, \"Running the gated suites\"); without it the test is built \
             as ignored"
        ),
    }
}

/// The value of the optional setting `var`, or `default` when it is unset.
pub fn or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_settings_fall_back_to_their_default() {
        assert_eq!(or("WARBLE_TESTKIT_SURELY_UNSET", "fallback"), "fallback");
        assert_eq!(or("PATH", "fallback"), std::env::var("PATH").unwrap());
    }

    #[test]
    #[should_panic(expected = "WARBLE_TESTKIT_SURELY_UNSET is not set")]
    fn a_missing_required_setting_fails_the_test() {
        required("WARBLE_TESTKIT_SURELY_UNSET");
    }
}
