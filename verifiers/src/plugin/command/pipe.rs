//! Pipe I/O of a worker process: bounded line reads of its stdout, the kept tail of its stderr,
//! and the threads that pump stdin, stdout and stderr.

use crate::plugin::protocol::excerpt;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ChildStdin;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Lines of stderr kept per worker for error messages.
const STDERR_LINES: usize = 12;
/// Characters kept of one stderr line.
const STDERR_LINE_CHARS: usize = 400;

/// What the reader thread saw on a worker's stdout.
pub(super) enum Event {
    Line(Vec<u8>),
    TooLong(usize),
    Eof,
    ReadError(String),
}

/// The last lines a worker wrote to stderr.
#[derive(Default)]
pub(super) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
}

impl StderrTail {
    pub(super) fn push(&self, line: String) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == STDERR_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }

    pub(super) fn render(&self) -> String {
        let l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// Reads one `\n`-terminated line of at most `max` bytes (without the terminator and a `\r`
/// before it). `Ok(None)` at end of file; a last line without a terminator still counts.
pub(super) fn read_line_bounded(
    r: &mut impl BufRead,
    max: usize,
) -> Result<Option<Vec<u8>>, Event> {
    let mut line = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Event::ReadError(e.to_string())),
        };
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (p, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(Event::TooLong(line.len() + take));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + usize::from(done));
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

/// Feeds the stdout reader's events into `tx` until end of file, an error or a line too long.
pub(super) fn read_stdout(stdout: impl Read, max: usize, tx: Sender<Event>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    loop {
        match read_line_bounded(&mut r, max) {
            Ok(Some(line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if tx.send(Event::Line(line)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Event::Eof);
                return;
            }
            Err(e) => {
                let _ = tx.send(e);
                return;
            }
        }
    }
}

/// Keeps the tail of a worker's stderr and forwards every line to `tracing`. `\r` counts as a
/// line break (progress bars); long lines are cut.
pub(super) fn read_stderr(stderr: impl Read, tail: Arc<StderrTail>, label: String) {
    let mut r = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    let flush = |line: &mut Vec<u8>| {
        if !line.iter().all(u8::is_ascii_whitespace) {
            let text = excerpt(&String::from_utf8_lossy(line), STDERR_LINE_CHARS);
            tracing::debug!(target: "oxrl_verifiers::plugin", "{label}: {text}");
            tail.push(text);
        }
        line.clear();
    };
    loop {
        let buf = match r.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        let n = buf.len();
        for &b in buf {
            if b == b'\n' || b == b'\r' {
                flush(&mut line);
            } else if line.len() < STDERR_LINE_CHARS * 4 {
                line.push(b);
            }
        }
        r.consume(n);
    }
    flush(&mut line);
}

/// Writes request lines to a worker until the channel closes (then stdin is closed) or a write
/// fails.
pub(super) fn write_stdin(mut stdin: ChildStdin, rx: Receiver<Vec<u8>>) {
    for line in rx {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines() {
        let mut r = BufReader::new(&b"ab\r\ncd\nlong-line\ntail"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 8).ok().flatten(),
            Some(b"ab".to_vec())
        );
        assert_eq!(
            read_line_bounded(&mut r, 8).ok().flatten(),
            Some(b"cd".to_vec())
        );
        assert!(matches!(
            read_line_bounded(&mut r, 8),
            Err(Event::TooLong(9))
        ));
        let mut r = BufReader::new(&b"tail"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 8).ok().flatten(),
            Some(b"tail".to_vec())
        );
        assert!(matches!(read_line_bounded(&mut r, 8), Ok(None)));
    }
}
