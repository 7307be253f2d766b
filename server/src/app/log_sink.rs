//! Where the access log's lines go.

use std::io::Write as _;
use std::sync::Mutex;

/// Where the lines go.
#[derive(Debug)]
pub enum Sink {
    /// Standard error (the default).
    Stderr,
    /// A file, appended to.
    File(Mutex<std::fs::File>),
}

impl Sink {
    /// `-` is standard error; anything else a file to append to.
    pub fn open(path: &std::path::Path) -> std::io::Result<Sink> {
        if path.as_os_str() == "-" {
            return Ok(Sink::Stderr);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Sink::File(Mutex::new(file)))
    }

    pub(crate) fn write(&self, line: &str) {
        match self {
            Sink::Stderr => eprintln!("{line}"),
            Sink::File(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = writeln!(f, "{line}") {
                    eprintln!("warning: the access log cannot be written: {e}");
                }
            }
        }
    }
}
