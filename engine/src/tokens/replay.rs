//! Replaying a token: its record, checked against this catalog and the
//! caller's privilege, and the query it names run again and verified.

use std::sync::Arc;
use std::time::Instant;

use crate::Engine;
use crate::error::Result;
use crate::options::{QueryOptions, ReplayOptions, Timings};
use crate::plan::pipeline::{Run, deep};
use crate::result::{End, QueryResult, Rows};
use crate::tokens::checksum::Checksum;
use crate::tokens::error::TokenError;
use crate::tokens::token::{TokenRecord, check_token};

impl Engine {
    /// Repeats the query a token names, and checks the rows against its record.
    ///
    /// The check happens after the last row: a mismatch is the stream's last item,
    /// an error. Unknown and malformed tokens, and tokens of another catalog or
    /// schema version, are refused before anything runs.
    pub async fn replay(&self, token: &str, options: &ReplayOptions) -> Result<QueryResult> {
        let record = self.record(token).await?;
        self.may_replay(&record, options.privileged)?;
        let uploads = self.load_uploads(token, &record.uploads).await?;
        if options.use_cache
            && let Some(hit) = self.results.get(token)
        {
            let snapshot = self
                .resolve_snapshot(Some(&adql::AsOf::Snapshot(record.snapshot)))
                .await?;
            return Ok(QueryResult {
                snapshot,
                schema: hit.schema.clone(),
                query: deep(|| adql::parse(&record.pinned_adql, &*self.tables_with(&uploads)))?,
                timings: Timings::default(),
                token: Some(record.token.clone()),
                pinned_adql: Some(record.pinned_adql.clone()),
                embargo_cutoff: record.embargo_cutoff,
                columns: hit.columns.clone(),
                rows: Rows::Cached(hit.batches.clone().into_iter()),
                maxrec: None,
                sent: 0,
                overflow: hit.overflow,
                checksum: Some(Checksum::new(record.checksum.starts_with("ordered:"))),
                end: End::Verify {
                    record: Box::new(record),
                    from_cache: true,
                },
                finished: None,
                keep: None,
            });
        }
        let t0 = Instant::now();
        let query = deep(|| adql::parse(&record.pinned_adql, &*self.tables_with(&uploads)))?;
        let t1 = Instant::now();
        // Chosen as the caller sees the catalog: a privileged token's snapshot
        // may be one the embargo hides from others (`may_replay` let it by).
        let (_, snapshot) = self
            .choose(
                &record.pinned_adql,
                query.as_of.as_ref(),
                &QueryOptions {
                    privileged: options.privileged,
                    ..QueryOptions::default()
                },
            )
            .await?;
        if snapshot.snapshot != record.snapshot {
            return Err(TokenError::Inconsistent {
                token: token.to_string(),
                recorded: record.snapshot,
                reads: snapshot.snapshot,
            }
            .into());
        }
        let run = Run {
            text: &record.pinned_adql,
            k: snapshot.snapshot,
            cutoff: record.embargo_cutoff,
            maxrec: record.maxrec,
            limit: options.time_limit.map(|d| (t0 + d, d)),
            uploads: &uploads,
            always_plan: false,
            hold: options.hold.clone(),
        };
        let mut result = self.execute(query, snapshot, run).await?;
        result.timings.parse = t1 - t0;
        result.token = Some(record.token.clone());
        result.pinned_adql = Some(record.pinned_adql.clone());
        result.checksum = Some(Checksum::new(record.checksum.starts_with("ordered:")));
        result.keep = if options.use_cache { self.keep() } else { None };
        result.end = End::Verify {
            record: Box::new(record),
            from_cache: false,
        };
        Ok(result)
    }

    /// The record of a token, checked against this catalog.
    pub async fn record(&self, token: &str) -> Result<TokenRecord> {
        check_token(token)?;
        let record = self
            .state
            .get(token)
            .await?
            .ok_or_else(|| TokenError::Unknown {
                token: token.to_string(),
                store: self.state.url().to_string(),
            })?;
        let log = self.catalog.state().await?;
        if record.catalog_id != log.catalog_id {
            return Err(TokenError::OtherCatalog {
                token: token.to_string(),
                made_on: format!("{} at {}", record.catalog_id, record.catalog_url),
                here: format!("{} at {}", log.catalog_id, self.catalog.url()),
            }
            .into());
        }
        let version = &self.schema_version;
        if &record.schema_version != version {
            return Err(TokenError::SchemaVersion {
                token: token.to_string(),
                made_with: record.schema_version,
                serving: version.clone(),
            }
            .into());
        }
        Ok(record)
    }

    /// Refuses a caller without privilege a token whose result holds rows still embargoed.
    pub fn may_replay(&self, record: &TokenRecord, privileged: bool) -> Result<()> {
        match (record.embargoed_until, self.embargo.cutoff()) {
            (Some(until), Some(cutoff)) if !privileged && until > cutoff => {
                Err(TokenError::Embargoed {
                    token: record.token.clone(),
                    until,
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    /// The state store's token secret, read (or made) once.
    pub(crate) async fn token_secret(&self) -> Result<Arc<Vec<u8>>> {
        self.secret
            .get_or_try_init(|| async { self.state.secret().await.map(Arc::new) })
            .await
            .cloned()
    }
}
