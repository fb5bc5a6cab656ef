//! Capped capture of a script's stdout and stderr. Writes never fail (a Rust guest panics
//! when stdout fails); bytes past the cap are dropped and counted. What was captured goes
//! to the host's log when the run ends, and a panic message on stderr goes into the error.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One captured stream; clones share the buffer.
#[derive(Debug, Clone)]
pub struct CappedPipe {
    cap: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl CappedPipe {
    pub fn new(cap: usize) -> Self {
        CappedPipe {
            cap,
            buffer: Arc::default(),
        }
    }

    /// The captured text (lossy UTF-8) and how many bytes were dropped past the cap.
    pub fn contents(&self) -> (String, u64) {
        let buffer = self.buffer.lock().expect("capture lock");
        (
            String::from_utf8_lossy(&buffer.bytes).into_owned(),
            buffer.dropped,
        )
    }

    /// Forgets what was captured: the next transaction of a warm instance starts empty.
    pub fn clear(&self) {
        let mut buffer = self.buffer.lock().expect("capture lock");
        buffer.bytes.clear();
        buffer.dropped = 0;
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().expect("capture lock");
        let room = self.cap.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The message of a Rust panic in captured stderr (`panicked at …:\n<message>`), if any.
pub fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let text = &stderr[start..];
    let end = text.find("\nnote:").unwrap_or(text.len());
    Some(text[..end].trim().replace('\n', " "))
}

/// Captured stderr up to the line where a Rust panic's report starts (all of it when there
/// is none).
pub fn before_panic(stderr: &str) -> &str {
    match stderr.find("panicked at ") {
        Some(at) => &stderr[..stderr[..at].rfind('\n').map_or(0, |line| line + 1)],
        None => stderr,
    }
}

/// Lines of stderr an error carries at most, and bytes.
const TAIL_LINES: usize = 12;
const TAIL_BYTES: usize = 2048;

/// The last non-empty lines of captured stderr (at most [`TAIL_LINES`] lines and
/// [`TAIL_BYTES`] bytes), so an error can carry a Python traceback or a JavaScript
/// exception; `None` when stderr is empty.
pub fn stderr_tail(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let mut tail: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for line in lines.iter().rev().take(TAIL_LINES) {
        bytes += line.len() + 1;
        if bytes > TAIL_BYTES && !tail.is_empty() {
            break;
        }
        tail.push(line);
    }
    tail.reverse();
    let text = tail.join("\n");
    (!text.is_empty()).then(|| clip(&text, TAIL_BYTES))
}

/// `text` cut to its last `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_past_the_cap_and_counts() {
        let pipe = CappedPipe::new(4);
        pipe.append(b"abc");
        pipe.append(b"def");
        assert_eq!(pipe.contents(), ("abcd".to_owned(), 2));
    }

    #[test]
    fn finds_a_panic_message() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "panicked at src/lib.rs:9:5: boom"
        );
        assert_eq!(panic_message("hello"), None);
    }

    #[test]
    fn finds_what_was_printed_before_a_panic() {
        let stderr = "Traceback (most recent call last):\nValueError: boom\nthread '<unnamed>' panicked at lib.rs:1:1:\nPython function threw\n";
        assert_eq!(
            before_panic(stderr),
            "Traceback (most recent call last):\nValueError: boom\n"
        );
        assert_eq!(before_panic("thread 'x' panicked at a.rs:1:1:\nboom"), "");
        assert_eq!(before_panic("plain"), "plain");
    }

    #[test]
    fn keeps_the_last_lines_of_stderr() {
        let mut stderr = String::from("noise\n");
        for i in 0..20 {
            stderr.push_str(&format!("line {i}\n\n"));
        }
        stderr.push_str("ValueError: boom\n");
        let tail = stderr_tail(&stderr).unwrap();
        assert!(tail.ends_with("line 19\nValueError: boom"), "{tail}");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert_eq!(stderr_tail("\n \n"), None);
        let long = "é".repeat(3000);
        assert!(stderr_tail(&long).unwrap().len() <= TAIL_BYTES + "…".len());
    }
}
