//! Support for the crate's property tests: the case count every property runs with, and
//! generators of hostile input shared by several modules' properties.

pub(crate) mod sql;

use proptest::test_runner::Config;

/// A proptest configuration that runs `default_cases` cases, or as many as the
/// `PROPTEST_CASES` environment variable asks for (`scripts/fuzz.sh` runs them longer).
pub(crate) fn config(default_cases: u32) -> Config {
    // `Config::default()` reads every `PROPTEST_*` variable; only an unset case count is
    // replaced by the default.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}
