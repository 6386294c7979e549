//! Fault-injection points for the crash tests: a run can be made to pause at a named point of a
//! given step so a test can SIGKILL it there (between two steps, or in the middle of a checkpoint
//! write) and prove that `--resume` continues exactly. Off unless `OXRL_FAULT_PAUSE` is set to
//! `<point>:<step>`; the paused run writes the file named by `OXRL_FAULT_PAUSE_MARKER` and
//! sleeps for up to two minutes (or until a stop is requested). Points: `after-step` (after the
//! step's metrics and checkpoint), `checkpoint-write` (after `model.safetensors` is written into
//! the temporary directory, before the checkpoint is published).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Environment variable naming the pause point and step.
pub const PAUSE_ENV: &str = "OXRL_FAULT_PAUSE";
/// Environment variable naming the marker file a paused run writes.
pub const MARKER_ENV: &str = "OXRL_FAULT_PAUSE_MARKER";

/// Pauses here when `OXRL_FAULT_PAUSE` is `point:step`.
pub fn pause_at(point: &str, step: u64, stop: Option<&AtomicBool>) {
    let Ok(spec) = std::env::var(PAUSE_ENV) else {
        return;
    };
    if spec != format!("{point}:{step}") {
        return;
    }
    if let Ok(marker) = std::env::var(MARKER_ENV) {
        let _ = std::fs::write(&marker, format!("{point}:{step}\n"));
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
