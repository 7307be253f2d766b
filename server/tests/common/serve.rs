//! `ppdb serve` on the bundled sample at a free port of 127.0.0.1, for the
//! tests that speak to it over HTTP; stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

/// A running server with its own state folder.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/tap`
    pub tap: String,
    _home: TempDir,
}

impl Server {
    /// Starts `ppdb serve` with extra arguments and waits for its address.
    #[allow(dead_code)]
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, &[])
    }

    /// Starts `ppdb serve` with extra arguments and environment variables.
    pub fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let home = TempDir::new().unwrap();
        // PPDB_BIN runs another build (an optimised one, for the long load run).
        let bin = std::env::var("PPDB_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ppdb").into());
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--access-log")
            .arg(home.path().join("access.log"))
            .args(extra)
            .env_remove("PPDB_CATALOG")
            .env_remove("PPDB_STATE")
            .env_remove("PPDB_TOKENS")
            .env_remove("PPDB_TOKENS_FILE")
            .envs(env.iter().copied())
            .env("XDG_STATE_HOME", home.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ppdb serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let tap = line
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        assert!(tap.starts_with("http://127.0.0.1:"), "{tap}");
        Server {
            child,
            tap,
            _home: home,
        }
    }

    /// `127.0.0.1:PORT`, for raw connections.
    #[allow(dead_code)]
    pub fn address(&self) -> String {
        self.tap
            .trim_start_matches("http://")
            .trim_end_matches("/tap")
            .to_string()
    }

    /// The server's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The access log's lines so far, parsed.
    #[allow(dead_code)]
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self._home.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each access log line is JSON"))
            .collect()
    }

    /// CPU seconds the server has used (user and system), from /proc.
    #[allow(dead_code)]
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// Asks the server to stop, as `kill` (SIGTERM) or a service manager does.
    #[allow(dead_code)]
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {}", self.pid());
    }

    /// How the process exited, waiting at most `within`; `None` if it runs on.
    #[allow(dead_code)]
    pub fn exited(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return Some(status);
            }
            if std::time::Instant::now() > end {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The server's root, where the web page is.
    #[allow(dead_code)]
    pub fn base(&self) -> &str {
        self.tap.trim_end_matches("/tap")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sync query's whole request, written out for a raw connection: a form
/// POST of `body` (already encoded).
#[allow(dead_code)]
pub fn sync_request(body: &str) -> String {
    format!(
        "POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
