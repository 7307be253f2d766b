//! The time by which a response must be written. A query result stops being
//! encoded at its deadline, but what was already encoded (eight pieces of
//! about 1 MiB, and up to 4 MiB held back for the headers) went out at the
//! reader's pace: a client reading a thousand bytes a second kept its
//! connection and about 10 MB of the server's memory for hours, and thirty
//! such clients held 425 MB. A response that carries a [`WriteBy`] has its
//! connection closed when that time passes before its body has ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio::time::Instant;

/// Put in a response's extensions: its body must end by `at`.
#[derive(Clone, Debug)]
pub struct WriteBy {
    at: Instant,
    ended: Arc<AtomicBool>,
}

impl WriteBy {
    /// A response body that must end by `at`.
    pub fn new(at: Instant) -> WriteBy {
        WriteBy {
            at,
            ended: Arc::default(),
        }
    }

    /// Says the body has ended (all of it handed to the connection).
    pub fn ended(&self) {
        self.ended.store(true, Ordering::Release);
    }
}

/// One connection's current response deadline, set as each response leaves
/// the router and cleared as the next request arrives.
#[derive(Clone)]
pub struct Watch {
    tx: Arc<watch::Sender<Option<WriteBy>>>,
}

impl Watch {
    /// A connection with no response under way.
    pub fn new() -> (Watch, watch::Receiver<Option<WriteBy>>) {
        let (tx, rx) = watch::channel(None);
        (Watch { tx: Arc::new(tx) }, rx)
    }

    /// A request arrived: the previous response, if any, is written.
    pub fn request(&self) {
        self.tx.send_replace(None);
    }

    /// A response leaves the router: follow its deadline, if it has one.
    pub fn response<B>(&self, response: &hyper::Response<B>) {
        if let Some(w) = response.extensions().get::<WriteBy>() {
            self.tx.send_replace(Some(w.clone()));
        }
    }
}

/// Resolves when a response's deadline passes before its body ended; never
/// otherwise.
pub async fn overdue(mut rx: watch::Receiver<Option<WriteBy>>) {
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            Some(w) if !w.ended.load(Ordering::Acquire) => {
                tokio::select! {
                    () = tokio::time::sleep_until(w.at) => {
                        if !w.ended.load(Ordering::Acquire) {
                            return;
                        }
                        // Ended in time: wait for the next response.
                        if rx.changed().await.is_err() {
                            return std::future::pending().await;
                        }
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return std::future::pending().await;
                        }
                    }
                }
            }
            _ => {
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn response(w: Option<&WriteBy>) -> hyper::Response<()> {
        let mut r = hyper::Response::new(());
        if let Some(w) = w {
            r.extensions_mut().insert(w.clone());
        }
        r
    }

    #[tokio::test]
    async fn only_a_body_that_has_not_ended_by_its_time_is_overdue() {
        let ms = Duration::from_millis;
        let (watch, rx) = Watch::new();
        let cut = tokio::spawn(overdue(rx));
        let late = WriteBy::new(Instant::now() + ms(300));
        watch.response(&response(Some(&late)));
        tokio::time::sleep(ms(150)).await;
        assert!(!cut.is_finished());
        tokio::time::timeout(ms(2000), cut)
            .await
            .expect("past its time and not ended")
            .unwrap();

        let (watch, rx) = Watch::new();
        let cut = tokio::spawn(overdue(rx));
        let on_time = WriteBy::new(Instant::now() + ms(300));
        watch.response(&response(Some(&on_time)));
        on_time.ended();
        tokio::time::sleep(ms(600)).await;
        assert!(!cut.is_finished(), "ended in time");
        // The next request clears it; a response without a deadline has none.
        watch.request();
        watch.response(&response(None));
        tokio::time::sleep(ms(300)).await;
        assert!(!cut.is_finished());
        // A later response that is late is still caught.
        let late = WriteBy::new(Instant::now() + ms(200));
        watch.response(&response(Some(&late)));
        tokio::time::timeout(ms(2000), cut)
            .await
            .expect("the second response was late")
            .unwrap();
    }
}
