//! The rule for models tests that need a file from outside the repository (the SmolLM2 GGUF):
//! when it is missing the test says so on stderr and skips, unless CI requires every such test
//! to run (`OXRL_CI_REQUIRE_EXTERNAL=1`, set by `.ci/run`), in which case it fails. The same rule
//! as the root crate's `tests/external/mod.rs`.
#![allow(dead_code)]

/// The environment variable with which CI turns "skip when missing" into "fail when missing".
pub const REQUIRE_VAR: &str = "OXRL_CI_REQUIRE_EXTERNAL";

/// True when CI requires the outside files (`OXRL_CI_REQUIRE_EXTERNAL` set, and not to `0` or empty).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `missing` is `None` when the file is there (returns true: run the test). Otherwise the test
/// `test` skips with the reason on stderr (returns false), or panics when CI requires the file.
pub fn available(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if required() {
        panic!("{test}: {why} ({REQUIRE_VAR} is set, so this test may not skip)");
    }
    eprintln!("skipping {test}: {why} (set {REQUIRE_VAR}=1 to make this a failure)");
    false
}
