//! Connections and bodies: read timeouts, per-address and total bounds.

use super::*;

/// Connections that send their request head a byte at a time are closed at
/// the read timeout, and the service answers everyone else meanwhile
/// (300 such connections were all held open, for ever).
#[tokio::test(flavor = "multi_thread")]
async fn connections_that_trickle_are_closed_at_the_read_timeout() {
    let s = Server::start(&["--read-timeout", "2", "--connections-per-address", "1000"]);
    let at = s.address();
    let mut trickling: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut c = TcpStream::connect(&at).unwrap();
            c.write_all(b"GET /tap/availability HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    // A byte now and then keeps no connection alive past the timeout.
    while started.elapsed() < Duration::from_secs(4) {
        for c in &mut trickling {
            let _ = c.write_all(b"X");
        }
        let (status, _, _) = tokio::time::timeout(
            Duration::from_secs(5),
            csv(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.SSObject", &[]),
        )
        .await
        .expect("the service answers while connections trickle");
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let open = trickling
        .iter_mut()
        .map(closed)
        .filter(|shut| !shut)
        .count();
    assert_eq!(open, 0, "connections still open after the read timeout");
}

/// One address may hold only so many connections; the next is closed at once.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_only_so_many_connections() {
    let s = Server::start(&["--connections-per-address", "8"]);
    let at = s.address();
    let mut held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&at).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ninth = TcpStream::connect(&at).unwrap();
    assert!(closed(&mut ninth), "the ninth connection was kept");
    assert!(!closed(&mut held[0]), "the first eight stay open");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, _) = csv(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.SSObject", &[]).await;
    assert_eq!(status, 200, "served again once the others closed");
}

/// The server holds at most --max-connections in all: past it a new
/// connection waits to be accepted until an idle one reaches the read
/// timeout, then is served (many addresses trickling bytes ran the process
/// out of file descriptors).
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_total_wait_for_one_to_close() {
    let s = Server::start(&["--max-connections", "4", "--read-timeout", "2"]);
    let at = s.address();
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&at).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body, _) = tokio::time::timeout(
        Duration::from_secs(20),
        csv(&s.tap, "SELECT COUNT(*) AS n FROM ppdb.SSObject", &[]),
    )
    .await
    .expect("served once an idle connection timed out");
    assert_eq!((status, body.as_str()), (200, "n\n15\n"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited: {:?}",
        started.elapsed()
    );
    drop(idle);
}

/// A body that stalls is refused at the read timeout with a message.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_stalls_is_refused_at_the_read_timeout() {
    let s = Server::start(&["--read-timeout", "1"]);
    let mut c = TcpStream::connect(s.address()).unwrap();
    c.write_all(
        b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\nQUERY=SEL",
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "held {:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
}
