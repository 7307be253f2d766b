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

mod error;
mod objects;
#[cfg(test)]
mod tests;

pub use error::StateError;

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

    /// Whether a catalog can hold its own state: object stores are taken to be;
    /// a local folder is if a `_state` folder can be made and written in it.
    pub(crate) fn catalog_may_hold(loc: &Location) -> bool {
        if loc.url.contains("://") && !loc.url.starts_with("file://") {
            return true;
        }
        let root = std::path::Path::new(loc.url.trim_start_matches("file://"));
        let dir = root.join("_state");
        if std::fs::create_dir_all(&dir).is_err() {
            return false;
        }
        let probe = dir.join(format!(".probe-{}", std::process::id()));
        let ok = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    }

    /// The per-user state store: `$PPDB_STATE`, else `$XDG_STATE_HOME/ppdb`, else `~/.local/state/ppdb`.
    pub fn user_default() -> Result<StateStore> {
        let dir = user_dir().ok_or(StateError::NoPlace)?;
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
        let record: TokenRecord =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Unreadable {
                what: format!("the record of token {token} in {}", self.url()),
                reason: e.to_string(),
            })?;
        Ok(Some(record))
    }

    /// Stores a record unless one exists; returns the one that was there first.
    pub async fn put(&self, record: &TokenRecord) -> Result<Option<TokenRecord>> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| StateError::Unencodable {
            what: format!("the record of token {}", record.token),
            reason: e.to_string(),
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
        Err(StateError::BadKey {
            key: key.to_string(),
        }
        .into())
    }
}

fn store_err(e: object_store::Error) -> Error {
    catalog::Error::from(e).into()
}
