//! The rule for end-to-end tests that need a tool from outside the repository (the official
//! `openai` Python client, a Python interpreter): when the tool is missing the test says so on
//! stderr and skips, unless CI requires every such test to run (`OXRL_CI_REQUIRE_EXTERNAL=1`,
//! set by `.ci/run`), in which case it fails.
#![allow(dead_code)]

/// The environment variable with which CI turns "skip when missing" into "fail when missing".
pub const REQUIRE_VAR: &str = "OXRL_CI_REQUIRE_EXTERNAL";

/// True when CI requires the outside tools (`OXRL_CI_REQUIRE_EXTERNAL` set, and not to `0` or empty).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `missing` is `None` when the tool is there (returns true: run the test). Otherwise the test
/// `test` skips with the reason on stderr (returns false), or panics when CI requires the tool.
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

/// `None` when `python3 -c code` runs and exits 0; otherwise why not (with its stderr).
pub fn python_check(code: &str) -> Option<String> {
    match std::process::Command::new("python3")
        .args(["-c", code])
        .output()
    {
        Err(e) => Some(format!("python3 cannot be run ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "`python3 -c {code:?}` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}
