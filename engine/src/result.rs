//! A running query's rows: the stream, the checksum taken as they pass, the
//! token record stored after the last one, and the cache replays are served from.

use crate::Engine;
use crate::options::Timings;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use catalog::log::SnapshotInfo;
use chrono::Utc;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::encode::ColumnInfo;
use crate::error::{Error, Result};
use crate::tokens::checksum::Checksum;
use crate::tokens::state::StateStore;
use crate::tokens::token::TokenRecord;
/// A running query: the snapshot it reads, its token, and a stream of its rows.
pub struct QueryResult {
    /// The snapshot the query read.
    pub snapshot: SnapshotInfo,
    /// The result columns.
    pub schema: SchemaRef,
    /// The validated, rewritten query (the pinned form, for tokened queries).
    pub query: adql::Query,
    /// Time spent before the first row (and on the record after the last).
    pub timings: Timings,
    /// The query token; `None` only for [`Engine::query_unpinned`].
    pub token: Option<String>,
    /// The pinned, reproducible ADQL that ran.
    pub pinned_adql: Option<String>,
    /// The embargo cutoff the rows were read under (MJD, TAI): rows observed
    /// later were left out. `None` when nothing was embargoed.
    pub embargo_cutoff: Option<f64>,
    /// What each column is: its metadata when it names a table column, and
    /// what its values are known to be (see [`crate::encode::lineage`]).
    pub(crate) columns: Vec<ColumnInfo>,
    pub(crate) rows: Rows,
    pub(crate) maxrec: Option<u64>,
    pub(crate) sent: u64,
    pub(crate) overflow: bool,
    pub(crate) checksum: Option<Checksum>,
    pub(crate) end: End,
    pub(crate) finished: Option<Finished>,
    pub(crate) keep: Option<Keep>,
}

pub(crate) enum Rows {
    Live(SendableRecordBatchStream),
    Cached(std::vec::IntoIter<RecordBatch>),
}

/// What happens after the last row.
pub(crate) enum End {
    Nothing,
    /// A first run: store the record (or check it against the one stored).
    Record {
        store: StateStore,
        /// The uploads the query read, kept with the record for its replays.
        uploads: Vec<crate::upload::Upload>,
        record: Box<TokenRecord>,
    },
    /// A replay: the rows must match the record.
    Verify {
        record: Box<TokenRecord>,
        from_cache: bool,
    },
    Done,
}

/// Batches copied for the result cache, until they outgrow their share of it.
pub(crate) struct Keep {
    pub(crate) cache: ResultCache,
    pub(crate) batches: Vec<RecordBatch>,
    pub(crate) bytes: u64,
    pub(crate) limit: u64,
}

/// What the end of a result established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Rows returned.
    pub rows: u64,
    /// Their checksum (`None` for unpinned queries).
    pub checksum: Option<String>,
    /// Whether MAXREC cut the result.
    pub overflow: bool,
    /// For a replay: rows and checksum equal the token's record.
    pub verified: bool,
    /// For a replay: the rows came from the engine's result cache.
    pub from_cache: bool,
}

pub(crate) struct Cached {
    pub(crate) schema: SchemaRef,
    pub(crate) columns: Vec<ColumnInfo>,
    pub(crate) batches: Vec<RecordBatch>,
    pub(crate) bytes: u64,
    pub(crate) overflow: bool,
}

pub(crate) type ResultCache = moka::sync::Cache<String, Arc<Cached>>;

impl QueryResult {
    /// The next batch of rows, or `None` at the end (rows past MAXREC are cut).
    ///
    /// After the last row, a first run stores its token record and a replay checks
    /// its rows against the record; a failure there is the last item of the stream.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        if matches!(self.end, End::Done) {
            return None;
        }
        let next = match &mut self.rows {
            Rows::Live(s) => s.next().await.map(|r| r.map_err(Error::from)),
            Rows::Cached(it) => it.next().map(Ok),
        };
        let batch = match next {
            None => return self.end_of_rows().await,
            Some(Err(e)) => {
                self.end = End::Done;
                return Some(Err(e));
            }
            Some(Ok(b)) => b,
        };
        let batch = match self.maxrec {
            None => batch,
            Some(max) => {
                let room = max.saturating_sub(self.sent);
                if batch.num_rows() as u64 > room {
                    self.overflow = true;
                }
                if room == 0 {
                    return self.end_of_rows().await;
                }
                let take = (batch.num_rows() as u64).min(room) as usize;
                batch.slice(0, take)
            }
        };
        self.sent += batch.num_rows() as u64;
        if let Some(c) = &mut self.checksum {
            c.update(&batch);
        }
        if let Some(k) = &mut self.keep {
            k.bytes += batch.get_array_memory_size() as u64;
            if k.bytes > k.limit {
                self.keep = None;
            } else {
                k.batches.push(batch.clone());
            }
        }
        Some(Ok(batch))
    }

    pub(crate) async fn end_of_rows(&mut self) -> Option<Result<RecordBatch>> {
        let end = std::mem::replace(&mut self.end, End::Done);
        match self.finish(end).await {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }

    pub(crate) async fn finish(&mut self, end: End) -> Result<()> {
        let checksum = self.checksum.as_ref().map(Checksum::finish);
        let mut done = Finished {
            rows: self.sent,
            checksum: checksum.clone(),
            overflow: self.overflow,
            verified: false,
            from_cache: false,
        };
        let token = self.token.clone().unwrap_or_default();
        match end {
            End::Nothing | End::Done => {}
            End::Record {
                store,
                uploads,
                mut record,
            } => {
                let t = std::time::Instant::now();
                crate::tokens::uploads::keep_uploads(&store, &uploads, &record.uploads).await?;
                record.rows = self.sent;
                record.overflow = self.overflow;
                record.checksum = checksum.clone().unwrap_or_default();
                record.created_at = Utc::now();
                if let Some(first) = store.put(&record).await? {
                    // The same request, answered before: it must have had the same answer.
                    check(&token, &first, self.sent, &record.checksum)?;
                }
                self.timings.record = t.elapsed();
            }
            End::Verify { record, from_cache } => {
                check(
                    &token,
                    &record,
                    self.sent,
                    checksum.as_deref().unwrap_or(""),
                )?;
                done.verified = true;
                done.from_cache = from_cache;
            }
        }
        if let Some(k) = self.keep.take() {
            k.cache.insert(
                token,
                Arc::new(Cached {
                    schema: self.schema.clone(),
                    columns: self.columns.clone(),
                    batches: k.batches,
                    bytes: k.bytes,
                    overflow: self.overflow,
                }),
            );
        }
        self.finished = Some(done);
        Ok(())
    }

    /// Whether MAXREC cut rows (known once the stream has ended).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Rows, checksum and verification, once the stream has ended.
    pub fn finished(&self) -> Option<&Finished> {
        self.finished.as_ref()
    }

    /// Reads the whole result.
    pub async fn collect(mut self) -> Result<(Vec<RecordBatch>, bool)> {
        let mut out = Vec::new();
        while let Some(b) = self.next_batch().await {
            out.push(b?);
        }
        Ok((out, self.overflow))
    }
}

pub(crate) fn check(token: &str, record: &TokenRecord, rows: u64, checksum: &str) -> Result<()> {
    if record.rows == rows && record.checksum == checksum {
        return Ok(());
    }
    Err(crate::tokens::error::TokenError::Mismatch {
        token: token.to_string(),
        expected_rows: record.rows,
        expected: record.checksum.clone(),
        rows,
        actual: checksum.to_string(),
    }
    .into())
}

impl Engine {
    pub(crate) fn keep(&self) -> Option<Keep> {
        (self.result_limit > 0).then(|| Keep {
            cache: self.results.clone(),
            batches: Vec::new(),
            bytes: 0,
            limit: self.result_limit,
        })
    }
}
