//! Request bodies held in memory at once are bounded: connections that send a
//! large body's headers and hold back its bytes took 22 MB each, 6.6 GB for
//! 300 of them. The bytes received count against one budget, a quarter of it
//! per caller; past that a request is refused at once, before its body is
//! read, and other callers are still served. A length declared and never
//! sent holds nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::serve::Server;

/// Sends a form POST's head announcing `length` bytes, and `sent` of them
/// (at least the six of `QUERY=`).
fn hold_body(address: &str, length: u64, sent: u64) -> TcpStream {
    let mut s = TcpStream::connect(address).unwrap();
    write!(
        s,
        "POST /tap/sync HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\nQUERY="
    )
    .unwrap();
    let rest = sent.saturating_sub(6) as usize;
    s.write_all(&vec![b'a'; rest]).unwrap();
    s
}

async fn small_query(client: &reqwest::Client, tap: &str) -> u16 {
    client
        .post(format!("{tap}/sync"))
        .form(&[
            ("QUERY", "SELECT TOP 1 ra FROM ppdb.DiaObject"),
            ("RESPONSEFORMAT", "csv"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_held_back_are_bounded_per_caller_and_others_are_served() {
    // 16 MiB uploads: a 272 MiB budget, 68 MiB of it one caller's.
    let s = Server::start(&[]);
    let at = s.address();
    let length = 16 << 20;
    // Four bodies whose bytes arrived, all but the last: 64 MiB held.
    let held: Vec<TcpStream> = (0..4).map(|_| hold_body(&at, length + 1, length)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut fifth = hold_body(&at, length, 6);
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
    assert_eq!(small_query(&other, &s.tap).await, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_length_holds_nothing_until_its_bytes_arrive() {
    // Sixteen bodies that declare 17 MiB and send six bytes used to reserve
    // 272 MiB, the whole budget, and shut every POST out for minutes.
    let s = Server::start(&[]);
    let at = s.address();
    let held: Vec<TcpStream> = (0..6).map(|_| hold_body(&at, 17 << 20, 6)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let same = reqwest::Client::new();
    assert_eq!(small_query(&same, &s.tap).await, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_budget_runs_out_under_is_answered_503() {
    // Five bodies admitted while nothing was held; their bytes then arrive,
    // and the fifth finds the caller's quarter (68 MiB) taken.
    let s = Server::start(&[]);
    let at = s.address();
    let length: u64 = 16 << 20;
    let mut conns: Vec<TcpStream> = (0..5).map(|_| hold_body(&at, length + 1, 6)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let chunk = vec![b'a'; length as usize - 6];
    for c in &mut conns {
        // The refused one may be closed under the writer.
        let _ = c.write_all(&chunk);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut answer = vec![0u8; 4096];
        if let Ok(n) = c.read(&mut answer) {
            let answer = String::from_utf8_lossy(&answer[..n]);
            if answer.starts_with("HTTP/1.1 503") && answer.contains("request bodies at once") {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 1, "exactly the body past the quarter is refused");
}
