//! What the property tests share: how many cases each one runs. Each property names a count
//! that keeps the lib tests quick; `PROPTEST_CASES=<n>` runs every property n times instead,
//! for a deep run.

use proptest::test_runner::Config;

/// The config of a property that runs `cases` cases unless PROPTEST_CASES says otherwise.
pub(crate) fn cases(cases: u32) -> Config {
    // Config::default() already reads PROPTEST_CASES (and the other PROPTEST_* variables).
    let config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        config
    } else {
        Config { cases, ..config }
    }
}
