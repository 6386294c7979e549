//! Reading a child's stdout and stderr concurrently, keeping at most a fixed number of bytes of
//! each: the rest is read and thrown away (so the child never blocks on a full pipe) and the
//! capture is flagged as truncated.

use std::io::{ErrorKind, Read};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

/// What a reader has captured so far.
#[derive(Debug, Default)]
struct Capture {
    bytes: Vec<u8>,
    truncated: bool,
}

/// A reader thread draining one pipe.
pub(super) struct PipeReader {
    capture: Arc<Mutex<Capture>>,
    done: mpsc::Receiver<()>,
}

/// The captured bytes of one stream.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub bytes: Vec<u8>,
    /// More bytes were written than kept.
    pub truncated: bool,
    /// The pipe reached end-of-file (false: something still held it open at the deadline).
    pub complete: bool,
}

impl PipeReader {
    /// Starts draining `pipe`, keeping up to `cap` bytes.
    pub(super) fn spawn<R: Read + Send + 'static>(
        mut pipe: R,
        cap: usize,
    ) -> std::io::Result<Self> {
        let capture = Arc::new(Mutex::new(Capture::default()));
        let (tx, done) = mpsc::channel();
        let shared = Arc::clone(&capture);
        thread::Builder::new()
            .name("sandbox-pipe".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut c = shared.lock().unwrap_or_else(|e| e.into_inner());
                            let room = cap.saturating_sub(c.bytes.len());
                            let keep = room.min(n);
                            c.bytes.extend_from_slice(&buf[..keep]);
                            if keep < n {
                                c.truncated = true;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            })?;
        Ok(Self { capture, done })
    }

    /// Waits for end-of-file until `deadline`, then returns what was captured. A reader still
    /// blocked at the deadline is left behind (it ends when the last holder of the pipe exits).
    pub(super) fn finish(self, deadline: Instant) -> Captured {
        let wait = deadline.saturating_duration_since(Instant::now());
        let complete = self.done.recv_timeout(wait).is_ok();
        let mut c = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        Captured {
            bytes: std::mem::take(&mut c.bytes),
            truncated: c.truncated,
            complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_the_first_cap_bytes_and_flags_truncation() {
        let data = vec![7u8; 300_000];
        let r = PipeReader::spawn(std::io::Cursor::new(data), 1000).unwrap();
        let c = r.finish(Instant::now() + Duration::from_secs(5));
        assert_eq!(c.bytes.len(), 1000);
        assert!(c.truncated && c.complete);
        let r = PipeReader::spawn(std::io::Cursor::new(b"hi".to_vec()), 1000).unwrap();
        let c = r.finish(Instant::now() + Duration::from_secs(5));
        assert_eq!(c.bytes, b"hi");
        assert!(!c.truncated && c.complete);
    }
}
