//! Standard output for a program that is piped into others: a reader that goes
//! away (`ppdb snapshots | head -1`) ends the command quietly, not with a panic.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The reader of standard output went away; the command stops, successfully.
#[derive(Debug)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for Closed {}

/// Writes one line to standard output; a closed pipe is [`Closed`].
pub fn line(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        r => Ok(r?),
    }
}

/// `println!` for commands whose output may be piped: returns [`Closed`] from
/// the enclosing function when the reader went away.
macro_rules! say {
    ($($t:tt)*) => {
        $crate::stdout::line(format_args!($($t)*))?
    };
}
pub(crate) use say;

/// Standard output that treats a closed pipe (`ppdb query ... | head`) as the
/// end of what anyone reads: later writes are dropped and `closed` is set.
pub struct Stdout {
    inner: std::io::BufWriter<std::io::Stdout>,
    closed: Arc<AtomicBool>,
}

impl Stdout {
    /// Buffered standard output, and the flag that says its reader went away.
    pub fn new() -> (Stdout, Arc<AtomicBool>) {
        let closed = Arc::new(AtomicBool::new(false));
        (
            Stdout {
                inner: std::io::BufWriter::new(std::io::stdout()),
                closed: closed.clone(),
            },
            closed,
        )
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Ok(())
            }
            r => r,
        }
    }
}
