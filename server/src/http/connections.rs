//! Accepting connections. `axum::serve` waits forever for a request's head and
//! lets one client hold any number of connections: 300 connections trickling a
//! byte now and then were all kept open. Here every connection must send its
//! request head within the read timeout (also between keep-alive requests),
//! and one address may hold only so many connections at once.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::app::users::network;
use crate::http::write_deadline::{Watch, overdue};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service as _;

/// How long a connection may take to send a request's head, and how many one
/// address may hold.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// The longest a request head (or the wait for the next one) may take.
    pub read_timeout: Duration,
    /// The most connections one client address may hold at once.
    pub per_address: usize,
    /// The most connections held at once in all: past it, new ones wait in
    /// the listen backlog until one closes (many addresses each trickling
    /// bytes ran the process out of file descriptors).
    pub total: usize,
}

/// How a stop went: whether every connection had closed within the grace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in progress was answered.
    Drained,
    /// Connections still open when the grace ran out (their requests end
    /// with the process).
    Cut,
}

/// Serves `router` on `listener` until the first of `signals`; then takes no
/// new connection, lets every open one finish the request it is in
/// (keep-alive ends there), and returns once all have closed, `grace` has
/// passed, or a second signal came.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    signals: impl futures::Stream<Item = ()>,
    grace: Duration,
) -> Stopped {
    use futures::StreamExt as _;
    let open: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let most = u32::try_from(limits.total.max(1)).unwrap_or(u32::MAX);
    let total = Arc::new(tokio::sync::Semaphore::new(most as usize));
    let (quit, quitting) = tokio::sync::watch::channel(false);
    let mut signals = std::pin::pin!(signals.fuse());
    loop {
        // A stream of signals that has ended (none could be listened for)
        // stops nothing: its branch is disabled.
        let slot = tokio::select! {
            slot = total.clone().acquire_owned() => slot,
            Some(()) = signals.next() => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(()) = signals.next() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, mostly: wait for connections to close
                // rather than spinning.
                eprintln!("warning: accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(held) = Held::take(&open, network(peer.ip()), limits.per_address) else {
            // Dropping the stream closes it: the client may come back once its
            // other connections are done.
            continue;
        };
        // Without TCP_NODELAY a small response waits on the client's delayed ACK
        // (about 40 ms on Linux): longer than the query itself.
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("warning: cannot set TCP_NODELAY on a connection: {e}");
        }
        // A second handle on the socket, to reset it if a response is late.
        let linger = tcp
            .into_std()
            .and_then(|std| Ok((std.try_clone()?, std)))
            .and_then(|(dup, std)| Ok((dup, tokio::net::TcpStream::from_std(std)?)));
        let (dup, tcp) = match linger {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("warning: cannot take a connection: {e}");
                continue;
            }
        };
        let router = router.clone();
        let mut quitting = quitting.clone();
        tokio::spawn(async move {
            let (watch, deadline) = Watch::new();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                watch.request();
                let watch = watch.clone();
                let response = router.clone().call(request.map(axum::body::Body::new));
                async move {
                    let response = response.await?;
                    watch.response(&response);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout);
            // An error here is the client's (a reset, a timeout, a malformed
            // head): hyper has answered what can be answered. A response not
            // written by its deadline closes the connection, and frees what
            // it held.
            let connection = http.serve_connection(TokioIo::new(tcp), service);
            let mut connection = std::pin::pin!(connection);
            let mut overdue = std::pin::pin!(overdue(deadline));
            let mut told = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    () = overdue.as_mut() => {
                        // Reset, not closed: a graceful close would still send the
                        // megabytes the kernel holds for the reader, at its pace.
                        let _ = socket2::SockRef::from(&dup).set_linger(Some(Duration::ZERO));
                        break;
                    }
                    // Stopping (or the accept loop gone): the request in
                    // progress is answered, then the connection closes.
                    _ = quitting.wait_for(|q| *q), if !told => {
                        told = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(dup);
            drop(held);
            drop(slot);
        });
    }
    drop(listener);
    let _ = quit.send(true);
    // Every open connection holds one of `total`'s permits until it closes.
    tokio::select! {
        drained = tokio::time::timeout(grace, total.acquire_many(most)) => match drained {
            Ok(_) => Stopped::Drained,
            Err(_) => Stopped::Cut,
        },
        Some(()) = signals.next() => Stopped::Cut,
    }
}

/// One open connection of an address, given back when dropped.
struct Held {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Held {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, most: usize) -> Option<Held> {
        let mut map = open.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(Held {
            open: open.clone(),
            ip,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Peer address of a request, as the accept loop recorded it.
pub fn peer(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// A request body that fails once it stalls for `idle` or has taken `whole`
/// in all, so that a client trickling a body cannot hold a handler forever.
pub fn bounded(body: axum::body::Body, idle: Duration, whole: Duration) -> axum::body::Body {
    use futures::StreamExt as _;
    let end = tokio::time::Instant::now() + whole;
    let frames = body.into_data_stream();
    axum::body::Body::from_stream(futures::stream::unfold(
        Some(frames),
        move |frames| async move {
            let mut frames = frames?;
            let until = (tokio::time::Instant::now() + idle).min(end);
            match tokio::time::timeout_at(until, frames.next()).await {
                Ok(Some(frame)) => Some((frame, Some(frames))),
                Ok(None) => None,
                Err(_) => {
                    let late = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the request body stalled for {} s or took more than {} s in all",
                            idle.as_secs(),
                            whole.as_secs()
                        ),
                    );
                    Some((Err(axum::Error::new(late)), None))
                }
            }
        },
    ))
}

/// Puts every request's body under [`bounded`], with the service's read timeout.
pub async fn bound_bodies(
    axum::extract::State(app): axum::extract::State<crate::app::Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let idle = app.config.read_timeout;
    let request = request.map(|b| bounded(b, idle, idle * BODY_TIMEOUTS));
    next.run(request).await
}

/// A body may take this many read timeouts in all.
pub const BODY_TIMEOUTS: u32 = 10;
