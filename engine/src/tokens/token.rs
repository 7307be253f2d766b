//! Query tokens: what names a result, and the state store that keeps the records.
//!
//! A token is derived from what determines a result — the catalog, the schema
//! version, the ADQL as written and pinned, the snapshot and MAXREC — keyed
//! with the state store's secret (HMAC-SHA256), so the same request gets the
//! same token from every server that shares the store, and nobody without the
//! secret can compute one (and ask whether someone ran a given query). It
//! names the rows, not their encoding: the same query in CSV and in VOTable
//! has one token.
//! The record behind it (JSON, at `tokens/{token}.json` in the state store)
//! adds what the first run found: the row count and the checksum.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tokens::error::TokenError;

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
    /// The response format of the request that made the token, in records made
    /// before tokens stopped depending on it (none now: a token names the rows,
    /// whatever their encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
    /// Rows returned.
    pub rows: u64,
    /// Whether MAXREC cut the result.
    pub overflow: bool,
    /// Checksum of the rows (see [`crate::tokens::checksum`]).
    pub checksum: String,
    /// When the first run finished.
    pub created_at: DateTime<Utc>,
    /// The tables uploaded with the query, kept in the state store for replays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uploads: Vec<UploadRef>,
    /// Rows after this time (MJD, TAI) were embargoed and left out; replays leave them out too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embargo_cutoff: Option<f64>,
    /// The newest row the result may hold (MJD, TAI; an upper bound), whether or
    /// not an embargo applied where it was made: replaying it needs privilege
    /// until the serving embargo passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embargoed_until: Option<f64>,
}

/// An uploaded table a token's query read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRef {
    /// Its name under `TAP_UPLOAD`.
    pub name: String,
    /// The digest of its columns and rows; it is kept at `uploads/{digest}.parquet`.
    pub digest: String,
    /// Its rows.
    pub rows: u64,
}

/// What a token is derived from.
pub(crate) struct Identity<'a> {
    pub catalog_id: &'a str,
    pub schema_version: &'a str,
    pub adql: &'a str,
    pub pinned_adql: &'a str,
    pub snapshot: u64,
    pub maxrec: Option<u64>,
    /// `name=digest;` per upload; empty (and left out of the hash) without uploads,
    /// so tokens of queries without uploads are what they always were.
    pub uploads: &'a str,
    /// The embargo cutoff applied, if any (left out of the hash when none, as above).
    pub embargo: Option<f64>,
}

impl Identity<'_> {
    /// The token: 100 bits of HMAC-SHA256 with `secret` over the fields, in
    /// lower-case base32.
    pub fn token(&self, secret: &[u8]) -> String {
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
        // Where the response format went: empty, as it always was for requests
        // that named none, so those tokens did not change when the format left.
        field(b"");
        if !self.uploads.is_empty() {
            field(self.uploads.as_bytes());
        }
        if let Some(cutoff) = self.embargo {
            field(b"embargo");
            field(&cutoff.to_bits().to_le_bytes());
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, &buf);
        let mut text = data_encoding::BASE32_NOPAD.encode(&tag.as_ref()[..13]);
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
        Err(TokenError::Malformed {
            token: token.to_string(),
        }
        .into())
    }
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
            uploads: "",
            embargo: None,
        }
        .token(b"secret")
    }

    #[test]
    fn tokens_are_short_url_safe_and_content_addressed() {
        let a = identity("SELECT 1");
        assert_eq!(a.len(), TOKEN_LEN);
        check_token(&a).unwrap();
        assert_eq!(a, identity("SELECT 1"));
        assert_ne!(a, identity("SELECT 2"));
        // Without the secret, nobody computes it.
        let mut other = String::new();
        for secret in [&b"another"[..], b""] {
            other = Identity {
                catalog_id: "c",
                schema_version: "v",
                adql: "SELECT 1",
                pinned_adql: "SELECT 1",
                snapshot: 3,
                maxrec: None,
                uploads: "",
                embargo: None,
            }
            .token(secret);
            assert_ne!(a, other);
        }
        check_token(&other).unwrap();
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        for bad in ["", "../../etc/passwd", "ABCDEFGHIJKLMNOPQRST", "abc"] {
            let e = check_token(bad).unwrap_err().to_string();
            assert!(e.contains("not a query token"), "{e}");
        }
    }
}
