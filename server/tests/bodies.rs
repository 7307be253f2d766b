//! Request bodies held in memory at once are bounded: connections that send a
//! large body's headers and hold back its bytes took 22 MB each, 6.6 GB for
//! 300 of them. Past one caller's quarter of the budget a request is refused
//! at once, before its body is read, and other callers are still served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::serve::Server;

fn address(tap: &str) -> String {
    tap.trim_start_matches("http://")
        .trim_end_matches("/tap")
        .to_string()
}

/// Sends a form POST's head announcing `length` bytes, and a few of them.
fn hold_body(address: &str, length: u64) -> TcpStream {
    let mut s = TcpStream::connect(address).unwrap();
    write!(
        s,
        "POST /tap/sync HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\nQUERY="
    )
    .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_held_back_are_bounded_per_caller_and_others_are_served() {
    // 16 MiB uploads: a 272 MiB budget, 68 MiB of it one caller's.
    let s = Server::start(&[]);
    let at = address(&s.tap);
    let length = 16 << 20;
    let held: Vec<TcpStream> = (0..4).map(|_| hold_body(&at, length)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = hold_body(&at, length);
    fifth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = fifth.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request bodies at once"), "{answer}");
    // Another caller is served while those are held.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other
        .post(format!("{}/sync", s.tap))
        .form(&[
            ("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject"),
            ("RESPONSEFORMAT", "csv"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(held);
}
