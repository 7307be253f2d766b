//! Query tokens: what names a result, and the state store that keeps the records.
//!
//! A token is derived from what determines a result — the catalog, the schema
//! version, the ADQL as written and pinned, the snapshot, MAXREC and the
//! format — so the same request always gets the same token, on any server.
//! The record behind it (JSON, at `tokens/{token}.json` in the state store)
//! adds what the first run found: the row count and the checksum.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use catalog::store::{self, Location};

use crate::error::{Error, Result};

/// The format tag of every token record.
pub const RECORD_FORMAT: &str = "ppdb-token/1";
/// Characters in a token.
pub const TOKEN_LEN: usize = 20;

/// Everything needed to repeat a query exactly, and what its first run returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// The token.
    pub token: String,
    /// Identity of the catalog the query read.
    pub catalog_id: String,
    /// Where that catalog was when the token was made (for people; identity is `catalog_id`).
    pub catalog_url: String,
    /// The served schema's version.
    pub schema_version: String,
    /// The ADQL as the user wrote it.
    pub adql: String,
    /// The ADQL that reproduces the result: every table pinned, a total order where needed.
    pub pinned_adql: String,
    /// The snapshot read.
    pub snapshot: u64,
    /// When that snapshot was committed.
    pub snapshot_time: DateTime<Utc>,
    /// The MAXREC of the request, if any.
    pub maxrec: Option<u64>,
    /// The response format of the request, if one was named.
    pub response_format: Option<String>,
    /// Rows returned.
    pub rows: u64,
    /// Whether MAXREC cut the result.
    pub overflow: bool,
    /// Checksum of the rows (see [`crate::checksum`]).
    pub checksum: String,
    /// When the first run finished.
    pub created_at: DateTime<Utc>,
}

/// What a token is derived from.
pub(crate) struct Identity<'a> {
    pub catalog_id: &'a str,
    pub schema_version: &'a str,
    pub adql: &'a str,
    pub pinned_adql: &'a str,
    pub snapshot: u64,
    pub maxrec: Option<u64>,
    pub response_format: Option<&'a str>,
}

impl Identity<'_> {
    /// The token: 100 bits of XXH3-128 over the fields, in lower-case base32.
    pub fn token(&self) -> String {
        let mut buf = Vec::new();
        let mut field = |b: &[u8]| {
            buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
            buf.extend_from_slice(b);
        };
        field(RECORD_FORMAT.as_bytes());
        field(self.catalog_id.as_bytes());
        field(self.schema_version.as_bytes());
        field(self.adql.as_bytes());
        field(self.pinned_adql.as_bytes());
        field(&self.snapshot.to_le_bytes());
        field(
            self.maxrec
                .map(|m| m.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(self.response_format.unwrap_or("").as_bytes());
        let h = xxh3_128(&buf).to_be_bytes();
        let mut text = data_encoding::BASE32_NOPAD.encode(&h[..13]);
        text.truncate(TOKEN_LEN);
        text.to_ascii_lowercase()
    }
}

/// Checks that text has the shape of a token before it is used as a path.
pub fn check_token(token: &str) -> Result<()> {
    let ok = token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Token {
            message: format!(
                "'{token}' is not a query token: a token is {TOKEN_LEN} characters of a-z and 2-7, \
                 as printed after `token:`"
            ),
        })
    }
}

/// Where token records (and later, job state) live: any object-store URL.
#[derive(Debug, Clone)]
pub struct StateStore {
    loc: Location,
}

impl StateStore {
    /// Opens (creating a local folder if needed) the state store at `url`.
    pub fn open(url: &str) -> Result<StateStore> {
        Ok(StateStore {
            loc: store::open(url, true)?,
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
        }
    }

    /// The per-user state store: `$PPDB_STATE`, else `$XDG_STATE_HOME/ppdb`, else `~/.local/state/ppdb`.
    pub fn user_default() -> Result<StateStore> {
        let dir = user_dir().ok_or_else(|| Error::Token {
            message: "no place for query tokens: set PPDB_STATE, XDG_STATE_HOME or HOME, \
                      or pass --state URL"
                .into(),
        })?;
        StateStore::open(&dir)
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
        let record: TokenRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Token {
            message: format!(
                "the record of token {token} in {} is unreadable: {e}",
                self.url()
            ),
        })?;
        Ok(Some(record))
    }

    /// Stores a record unless one exists; returns the one that was there first.
    pub async fn put(&self, record: &TokenRecord) -> Result<Option<TokenRecord>> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| Error::Token {
            message: format!("cannot encode the record of token {}: {e}", record.token),
        })?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .loc
            .store
            .put_opts(&self.path(&record.token), PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => self.get(&record.token).await,
            Err(e) => Err(catalog::Error::from(e).into()),
        }
    }

    /// Forgets a token; returns whether it existed.
    pub async fn expire(&self, token: &str) -> Result<bool> {
        check_token(token)?;
        if self.get(token).await?.is_none() {
            return Ok(false);
        }
        self.loc
            .store
            .delete(&self.path(token))
            .await
            .map_err(catalog::Error::from)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(adql: &str) -> String {
        Identity {
            catalog_id: "c",
            schema_version: "v",
            adql,
            pinned_adql: adql,
            snapshot: 3,
            maxrec: None,
            response_format: None,
        }
        .token()
    }

    #[test]
    fn tokens_are_short_url_safe_and_content_addressed() {
        let a = identity("SELECT 1");
        assert_eq!(a.len(), TOKEN_LEN);
        check_token(&a).unwrap();
        assert_eq!(a, identity("SELECT 1"));
        assert_ne!(a, identity("SELECT 2"));
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        for bad in ["", "../../etc/passwd", "ABCDEFGHIJKLMNOPQRST", "abc"] {
            let e = check_token(bad).unwrap_err().to_string();
            assert!(e.contains("not a query token"), "{e}");
        }
    }
}
