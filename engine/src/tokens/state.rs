//! The state store: what the service remembers besides the catalog — query
//! token records (`tokens/{token}.json`) and TAP jobs (`jobs/{id}/...`).
//!
//! It is any object-store URL, so that several servers sharing one store can
//! answer for each other's tokens and jobs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use catalog::store::{self, Location};

use crate::error::{Error, Result};
use crate::tokens::budget::Budget;
use crate::tokens::token::{TokenRecord, check_token};

/// Where token records and TAP jobs live: any object-store URL.
#[derive(Debug, Clone)]
pub struct StateStore {
    loc: Location,
    /// What the store may hold, when bounded.
    budget: Option<Arc<Budget>>,
}

impl StateStore {
    /// Opens (creating a local folder if needed) the state store at `url`.
    pub fn open(url: &str) -> Result<StateStore> {
        Ok(StateStore {
            loc: store::open(url, true)?,
            budget: None,
        })
    }

    /// The state store inside a catalog, at `_state/`.
    pub fn in_catalog(catalog: &Location) -> StateStore {
        StateStore {
            loc: Location {
                store: catalog.store.clone(),
                prefix: catalog.child("_state"),
                url: format!("{}/_state", catalog.url.trim_end_matches('/')),
            },
            budget: None,
        }
    }

    /// The per-user state store: `$PPDB_STATE`, else `$XDG_STATE_HOME/ppdb`, else `~/.local/state/ppdb`.
    pub fn user_default() -> Result<StateStore> {
        let dir = user_dir().ok_or_else(|| Error::State {
            message: "no place for query tokens: set PPDB_STATE, XDG_STATE_HOME or HOME, \
                      or pass --state URL"
                .into(),
        })?;
        StateStore::open(&dir)
    }

    /// The same store, holding at most `limit` bytes from now on: past it, new
    /// records, kept uploads and results are refused with [`Error::StateFull`].
    /// What it holds already is counted by [`StateStore::recount`].
    pub fn bounded(mut self, limit: u64) -> StateStore {
        self.budget = Some(Arc::new(Budget::new(limit, 0)));
        self
    }

    /// Counts what the store holds from a listing (other servers sharing it
    /// write too); returns the bytes held and the limit, if bounded.
    pub async fn recount(&self) -> Result<Option<(u64, u64)>> {
        let Some(budget) = &self.budget else {
            return Ok(None);
        };
        let mut listing = self.loc.store.list(Some(&self.loc.prefix));
        let mut used = 0u64;
        while let Some(meta) = listing.try_next().await.map_err(store_err)? {
            used = used.saturating_add(meta.size);
        }
        budget.set_used(used);
        Ok(Some((used, budget.limit())))
    }

    /// Refuses with [`Error::StateFull`] when `bytes` more would take a
    /// bounded store past its limit.
    pub fn check_room(&self, bytes: u64) -> Result<()> {
        self.budget.as_ref().map_or(Ok(()), |b| b.check_room(bytes))
    }

    /// The bytes held (as far as this process knows) and the limit, if bounded.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.budget.as_ref().map(|b| (b.used(), b.limit()))
    }

    /// As [`StateStore::check_room`], but a store that looks full is listed
    /// again first (at most every ten seconds): the room an operator made with
    /// `ppdb token expire`, or another server's deletes, count at once.
    pub async fn room_for(&self, bytes: u64) -> Result<()> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if budget.check_room(bytes).is_err() && budget.count_older_than(Duration::from_secs(10)) {
            self.recount().await?;
        }
        budget.check_room(bytes)
    }

    fn charge(&self, bytes: usize) -> Result<()> {
        self.budget
            .as_ref()
            .map_or(Ok(()), |b| b.charge(bytes as u64))
    }

    fn release(&self, bytes: u64) {
        if let Some(b) = &self.budget {
            b.release(bytes);
        }
    }

    /// The URL records are kept under.
    pub fn url(&self) -> &str {
        &self.loc.url
    }

    fn path(&self, token: &str) -> object_store::path::Path {
        self.loc.child(&format!("tokens/{token}.json"))
    }

    /// The record of a token, or `None` if this store has none.
    pub async fn get(&self, token: &str) -> Result<Option<TokenRecord>> {
        check_token(token)?;
        let bytes = match self.loc.store.get(&self.path(token)).await {
            Ok(r) => r.bytes().await.map_err(catalog::Error::from)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(catalog::Error::from(e).into()),
        };
        let record: TokenRecord = serde_json::from_slice(&bytes).map_err(|e| Error::State {
            message: format!(
                "the record of token {token} in {} is unreadable: {e}",
                self.url()
            ),
        })?;
        Ok(Some(record))
    }

    /// Stores a record unless one exists; returns the one that was there first.
    pub async fn put(&self, record: &TokenRecord) -> Result<Option<TokenRecord>> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| Error::State {
            message: format!("cannot encode the record of token {}: {e}", record.token),
        })?;
        if self
            .create_at(&self.path(&record.token), Bytes::from(body), true)
            .await?
        {
            return Ok(None);
        }
        self.get(&record.token).await
    }

    /// Writes `path` only if nothing is there yet: `false` when another writer,
    /// in this process or any other on the store, was first.
    /// `charged`: whether the bytes count against the budget (all but the secret do).
    async fn create_at(
        &self,
        path: &object_store::path::Path,
        bytes: Bytes,
        charged: bool,
    ) -> Result<bool> {
        let len = bytes.len();
        if charged {
            self.charge(len)?;
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let created = match self
            .loc
            .store
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        };
        if charged && !matches!(created, Ok(true)) {
            self.release(len as u64);
        }
        created
    }

    /// Forgets a token; returns whether it existed.
    pub async fn expire(&self, token: &str) -> Result<bool> {
        check_token(token)?;
        let size = match self.loc.store.head(&self.path(token)).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(store_err(e)),
        };
        match self.loc.store.delete(&self.path(token)).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(store_err(e)),
        }
        self.release(size);
        Ok(true)
    }

    /// Every live token record.
    pub async fn list(&self) -> Result<Vec<TokenRecord>> {
        let prefix = self.loc.child("tokens");
        let metas: Vec<_> = self
            .loc
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(catalog::Error::from)?;
        let mut out = Vec::new();
        for m in metas {
            let Some(name) = m.location.filename() else {
                continue;
            };
            let Some(token) = name.strip_suffix(".json") else {
                continue;
            };
            if check_token(token).is_err() {
                continue;
            }
            if let Some(r) = self.get(token).await? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }
}

impl StateStore {
    /// The snapshots of catalog `catalog_id` that live tokens read: retention
    /// must keep them, or those tokens could no longer be replayed.
    pub async fn snapshots_read(&self, catalog_id: &str) -> Result<Vec<u64>> {
        let mut read: Vec<u64> = self
            .list()
            .await?
            .into_iter()
            .filter(|r| r.catalog_id == catalog_id)
            .map(|r| r.snapshot)
            .collect();
        read.sort_unstable();
        read.dedup();
        Ok(read)
    }

    /// Deletes the kept uploads no token record names (their tokens were
    /// expired) and older than `grace` (a query may be about to store the
    /// record that names one); returns how many went, and their bytes.
    pub async fn remove_unread_uploads(&self, grace: std::time::Duration) -> Result<(usize, u64)> {
        let read: std::collections::HashSet<String> = self
            .list()
            .await?
            .into_iter()
            .flat_map(|r| {
                r.uploads
                    .into_iter()
                    .map(|u| format!("{}.parquet", u.digest))
            })
            .collect();
        let before =
            chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let metas: Vec<_> = self
            .loc
            .store
            .list(Some(&self.loc.child("uploads")))
            .try_collect()
            .await
            .map_err(store_err)?;
        let (mut gone, mut bytes) = (0, 0);
        for m in metas {
            let unread = m.location.filename().is_some_and(|n| !read.contains(n));
            if unread && m.last_modified < before {
                match self.loc.store.delete(&m.location).await {
                    Ok(()) => {
                        self.release(m.size);
                        gone += 1;
                        bytes += m.size;
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store_err(e)),
                }
            }
        }
        Ok((gone, bytes))
    }
}

fn user_dir() -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(s) = env("PPDB_STATE") {
        return Some(s);
    }
    if let Some(x) = env("XDG_STATE_HOME") {
        return Some(format!("{x}/ppdb"));
    }
    env("HOME").map(|h| format!("{h}/.local/state/ppdb"))
}

/// Checks that a key names something inside the state store: segments of
/// letters, digits, `.`, `_` and `-`, never `.` or `..`.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::State {
            message: format!("'{key}' is not a valid state key"),
        })
    }
}

fn store_err(e: object_store::Error) -> Error {
    catalog::Error::from(e).into()
}

impl StateStore {
    /// The bytes at `key`, or `None` if there are none.
    pub async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        check_key(key)?;
        match self.loc.store.get(&self.loc.child(key)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(store_err)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Whether something is kept at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        match self.loc.store.head(&self.loc.child(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The bytes at `key` as a stream (for results too large to hold), or `None`.
    pub async fn read_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, std::result::Result<Bytes, std::io::Error>>>> {
        check_key(key)?;
        match self.loc.store.get(&self.loc.child(key)).await {
            Ok(r) => Ok(Some(Box::pin(
                r.into_stream().map_err(std::io::Error::other),
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The secret tokens are keyed with: made once per state store (32 random
    /// bytes at `secret`), and shared by every process that uses the store, so
    /// that they all give a request the same token and nobody else can.
    pub async fn secret(&self) -> Result<Vec<u8>> {
        const KEY: &str = "secret";
        if let Some(b) = self.read(KEY).await? {
            return Ok(b.to_vec());
        }
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh).map_err(
            |_| Error::State {
                message: "no random source to make the token secret from".into(),
            },
        )?;
        // Never refused for room: without it no query could be answered.
        if self
            .create_at(&self.loc.child(KEY), Bytes::from(fresh.to_vec()), false)
            .await?
        {
            return Ok(fresh.to_vec());
        }
        // Another process made it first: theirs is the one.
        self.read(KEY)
            .await?
            .map(|b| b.to_vec())
            .ok_or_else(|| Error::State {
                message: "the token secret vanished as it was made".into(),
            })
    }

    /// Writes `key` only if nothing is there yet: `false` when another writer,
    /// in this process or any other on the store, was first.
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<bool> {
        check_key(key)?;
        self.create_at(&self.loc.child(key), bytes, true).await
    }

    /// Replaces the bytes at `key`. Counted but never refused for room: what is
    /// replaced (a job's record as its phase changes) was admitted when it was
    /// made, and must be able to say how it ended. Make new things with
    /// [`StateStore::create`] or check [`StateStore::check_room`] first.
    pub async fn write(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_key(key)?;
        let path = self.loc.child(key);
        let len = bytes.len() as u64;
        // What is replaced is given back: counting every rewrite of a job's
        // record in full let a few rewrites make the store look full.
        let replaced = match &self.budget {
            None => 0,
            Some(_) => match self.loc.store.head(&path).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => 0,
                Err(e) => return Err(store_err(e)),
            },
        };
        self.loc
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(store_err)?;
        if let Some(b) = &self.budget {
            b.count(len);
            b.release(replaced);
        }
        Ok(())
    }

    /// The bytes held under `prefix` (a folder-like key), from a listing.
    pub async fn size_under(&self, prefix: &str) -> Result<u64> {
        check_key(prefix)?;
        let mut listing = self.loc.store.list(Some(&self.loc.child(prefix)));
        let mut size = 0u64;
        while let Some(meta) = listing.try_next().await.map_err(store_err)? {
            size = size.saturating_add(meta.size);
        }
        Ok(size)
    }

    /// Starts writing `key` piece by piece (a multipart upload for large
    /// objects); each piece counts against the budget as it is written.
    pub fn writer(&self, key: &str) -> Result<StateWriter> {
        check_key(key)?;
        self.check_room(1)?;
        let store: Arc<dyn ObjectStore> = self.loc.store.clone();
        Ok(StateWriter {
            inner: BufWriter::new(store, self.loc.child(key)),
            budget: self.budget.clone(),
            written: 0,
        })
    }

    /// Deletes everything under `prefix` (a folder-like key).
    pub async fn remove_all(&self, prefix: &str) -> Result<()> {
        check_key(prefix)?;
        let metas: Vec<_> = self
            .loc
            .store
            .list(Some(&self.loc.child(prefix)))
            .try_collect()
            .await
            .map_err(store_err)?;
        for m in metas {
            match self.loc.store.delete(&m.location).await {
                Ok(()) => self.release(m.size),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }

    /// The names directly under `prefix` (one level, like `ls`).
    pub async fn children(&self, prefix: &str) -> Result<Vec<String>> {
        check_key(prefix)?;
        let listing = self
            .loc
            .store
            .list_with_delimiter(Some(&self.loc.child(prefix)))
            .await
            .map_err(store_err)?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(listing.objects.iter().map(|m| &m.location))
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// An object being written to the state store piece by piece.
pub struct StateWriter {
    inner: BufWriter,
    budget: Option<Arc<Budget>>,
    written: u64,
}

impl StateWriter {
    /// Appends bytes, or refuses with [`Error::StateFull`] if they do not fit.
    pub async fn put(&mut self, bytes: Bytes) -> Result<()> {
        if let Some(b) = &self.budget {
            b.charge(bytes.len() as u64)?;
        }
        self.written += bytes.len() as u64;
        self.inner.put(bytes).await.map_err(store_err)
    }

    /// Completes the object.
    pub async fn finish(mut self) -> Result<()> {
        self.inner.shutdown().await.map_err(|e| Error::State {
            message: format!("cannot complete a state object: {e}"),
        })
    }

    /// Abandons the object, removing what was uploaded.
    pub async fn abort(mut self) -> Result<()> {
        if let Some(b) = &self.budget {
            b.release(self.written);
        }
        self.inner.abort().await.map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_leave_the_store() {
        for bad in [
            "",
            "..",
            "../x",
            "jobs/../../x",
            "/etc/passwd",
            "jobs//x",
            "jobs/./x",
            "jobs/%2e%2e/x",
            "jobs\\..\\x",
            "tokens/a b.json",
            "jobs/x\u{0}",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "jobs/5f0c/job.json",
            "tokens/abc.json",
            "uploads/0a1b.parquet",
        ] {
            assert!(check_key(good).is_ok(), "{good:?} was refused");
        }
    }

    #[tokio::test]
    async fn a_bounded_store_keeps_within_its_limit_and_counts_what_others_wrote() {
        let dir = tempfile::TempDir::new().unwrap();
        let url = dir.path().to_str().unwrap();
        let s = StateStore::open(url).unwrap().bounded(1000);
        assert_eq!(s.recount().await.unwrap(), Some((0, 1000)));
        assert!(s.create("x/a", Bytes::from(vec![0; 600])).await.unwrap());
        let refused = s.create("b", Bytes::from(vec![0; 600])).await;
        assert!(
            matches!(refused, Err(Error::StateFull { .. })),
            "{refused:?}"
        );
        assert!(
            !s.exists("b").await.unwrap(),
            "a refused write leaves nothing"
        );
        // A result written piece by piece stops where the room ends.
        let mut w = s.writer("c").unwrap();
        w.put(Bytes::from(vec![0; 300])).await.unwrap();
        assert!(w.put(Bytes::from(vec![0; 300])).await.is_err());
        w.abort().await.unwrap();
        assert_eq!(s.usage(), Some((600, 1000)));
        // Rewriting a record counts its new size, not both.
        for _ in 0..10 {
            s.write("x/job", Bytes::from(vec![0; 100])).await.unwrap();
        }
        assert_eq!(s.usage(), Some((700, 1000)));
        s.write("x/job", Bytes::new()).await.unwrap();
        assert_eq!(s.usage(), Some((600, 1000)));
        // Another process on the same store writes; the next listing sees it.
        let other = StateStore::open(url).unwrap();
        other.write("d", Bytes::from(vec![0; 350])).await.unwrap();
        assert_eq!(s.recount().await.unwrap(), Some((950, 1000)));
        assert!(s.check_room(100).is_err());
        s.remove_all("x").await.unwrap();
        assert_eq!(s.usage(), Some((350, 1000)));
        assert!(s.check_room(600).is_ok());
    }

    #[tokio::test]
    async fn a_store_that_looks_full_is_counted_again_before_it_refuses() {
        let dir = tempfile::TempDir::new().unwrap();
        let url = dir.path().to_str().unwrap();
        let s = StateStore::open(url).unwrap().bounded(1000);
        s.create("x/a", Bytes::from(vec![0; 900])).await.unwrap();
        // An operator (another process) makes room.
        StateStore::open(url)
            .unwrap()
            .remove_all("x")
            .await
            .unwrap();
        assert!(
            s.check_room(500).is_err(),
            "this process has not seen it yet"
        );
        s.room_for(500).await.unwrap();
        assert_eq!(s.usage(), Some((0, 1000)));
    }

    #[tokio::test]
    async fn uploads_no_record_names_are_removed_after_the_grace() {
        let s = StateStore::open("memory://state-unread-uploads")
            .unwrap()
            .bounded(1 << 20);
        let token = "a".repeat(crate::tokens::token::TOKEN_LEN);
        let record: TokenRecord = serde_json::from_value(serde_json::json!({
            "format": "ppdb-token/1", "token": token, "catalog_id": "c", "catalog_url": "u",
            "schema_version": "v", "adql": "q", "pinned_adql": "q", "snapshot": 1,
            "snapshot_time": "2026-01-01T00:00:00Z", "maxrec": null, "rows": 0,
            "overflow": false, "checksum": "x", "created_at": "2026-01-01T00:00:00Z",
            "uploads": [{"name": "t", "digest": "kept", "rows": 1}],
        }))
        .unwrap();
        s.put(&record).await.unwrap();
        for name in ["kept", "orphan"] {
            s.create(
                &format!("uploads/{name}.parquet"),
                Bytes::from_static(b"12345"),
            )
            .await
            .unwrap();
        }
        let young = s
            .remove_unread_uploads(std::time::Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(young, (0, 0), "within the grace nothing goes");
        let held = s.usage().unwrap().0;
        let gone = s
            .remove_unread_uploads(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(gone, (1, 5));
        assert!(s.exists("uploads/kept.parquet").await.unwrap());
        assert!(!s.exists("uploads/orphan.parquet").await.unwrap());
        assert_eq!(s.usage().unwrap().0, held - 5);
    }

    #[tokio::test]
    async fn reads_and_writes_of_bad_keys_are_refused() {
        let s = StateStore::open("memory://state-keys").unwrap();
        assert!(
            s.write("../escape", Bytes::from_static(b"x"))
                .await
                .is_err()
        );
        assert!(s.read("../../etc/passwd").await.is_err());
        assert!(s.children("..").await.is_err());
    }
}
