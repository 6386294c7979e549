//! End-to-end through a real `oxrl serve` on loopback with the official `openai` Python client:
//! chat, completions, streaming, `n > 1`, chat logprobs and echo-logprob prompt scoring
//! (`tests/openai_client_check.py` asserts the shapes and values). The client is an outside tool
//! (`python3 -m pip install 'openai>=1.40'`, done by `.ci/run`): without it this test says so on
//! stderr and skips, or fails when `OXRL_CI_REQUIRE_EXTERNAL=1` (see `tests/external/mod.rs`).

mod external;
mod http_support;

use http_support::{write_model, Server};
use std::process::Command;
use std::time::Duration;

#[test]
fn official_openai_client_works_against_oxrl_serve() {
    let missing = external::python_check("import openai").map(|why| {
        format!("the `openai` Python package is needed (`python3 -m pip install 'openai>=1.40'`): {why}")
    });
    if !external::available("official_openai_client_works_against_oxrl_serve", missing) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    write_model(tmp.path(), 11);
    let server = Server::start(tmp.path(), &["--api-key", "sk-test"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client_check.py");
    let out = Command::new("python3")
        .args([script, &server.base, "sk-test", "tiny"])
        .output()
        .expect("running the openai client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai client checks failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("openai client checks passed"), "{stdout}");
    let (ok, err) = server.stop(Duration::from_secs(20));
    assert!(ok, "oxrl serve did not shut down cleanly on SIGTERM: {err}");
}
