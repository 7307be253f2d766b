//! What a caller can do to the service rather than to the data, against
//! `ppdb serve` on 127.0.0.1: connections that trickle, requests that race,
//! results that fail half way, arithmetic that overflows, maintenance under a
//! live server; and the trace each request leaves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod connections;
mod memory;
mod operations;
mod shares;

#[path = "../common/mod.rs"]
mod common;
use common::ppdb as support;
use common::serve::{Server, sync_request};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("ppdb-tests")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn csv(
    tap: &str,
    query: &str,
    extra: &[(&str, &str)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut params = vec![("QUERY", query), ("RESPONSEFORMAT", "csv")];
    params.extend_from_slice(extra);
    let r = client()
        .post(format!("{tap}/sync"))
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

/// A join that runs for minutes on the sample (debug build), to be in
/// progress when something happens to the server.
const MINUTES_LONG: &str = "SELECT COUNT(*) AS n FROM ppdb.DiaForcedSource AS a \
                            JOIN ppdb.DiaSource AS b ON a.psfFlux < b.psfFlux \
                            JOIN ppdb.DiaObject AS c ON c.ra * a.psfFlux < b.ra * b.psfFlux";

/// The body of a GET.
async fn text(url: String) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether the server has closed `stream` (a read gives end of file or a reset).
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or 400 the server sent as it closed: read on to the end.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

fn ppdb(args: &[&str]) -> String {
    support::ok(args)
}

fn age(dir: &Path) {
    let status = std::process::Command::new("find")
        .arg(dir)
        .args([
            "-name",
            "*.parquet",
            "-exec",
            "touch",
            "-d",
            "2 days ago",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

const CROSS_JOIN: &str = "SELECT COUNT(*) FROM ppdb.DiaForcedSource a, ppdb.DiaForcedSource b, \
                          ppdb.DiaSource c WHERE a.psfFlux + b.psfFlux > c.psfFlux";

/// Bytes of the files under `dir`, at any depth.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The most memory the server process has held, in bytes.
fn peak_memory(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}
