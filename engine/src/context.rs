//! The engine: one DataFusion session template per catalog, and queries pinned to a snapshot.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use catalog::Catalog;
use catalog::log::{LogState, SnapshotInfo};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::datasource::MemTable;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;

use crate::checksum::Checksum;
use crate::crossmatch::UPLOAD_SCHEMA;
use crate::embargo::{self, Access, Embargo, Timing};
use crate::error::{Error, Result, planner_refusal};
use crate::format::ColumnInfo;
use crate::memory::QueryPool;
use crate::provider::{PpdbTable, View};
use crate::state::StateStore;
use crate::tables;
use crate::token::{Identity, TokenRecord, UploadRef, check_token};
use crate::upload::Upload;

/// The largest MAXREC planned as a limit (a top-k in memory under an ORDER BY);
/// larger cuts are made on the result stream.
const TOPK_ROWS: u64 = 100_000;

/// How the engine runs queries.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory one query may use for execution (sorts, joins, aggregates), in bytes;
    /// each query has its own pool, so one heavy query cannot starve the others.
    pub memory_limit: usize,
    /// Of that, what sorts and other operators that can spill to disk hold before
    /// they do, in bytes: this keeps the memory of a large sorted result flat.
    pub spill_memory: usize,
    /// Memory all queries together may use, in bytes (by default half of the
    /// machine's): past it a query fails rather than the process.
    pub service_memory: usize,
    /// Temporary disk all queries together may fill when they spill, in bytes.
    pub spill_disk: u64,
    /// The folder spilled files go under (by default the system's temporary folder).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Threads of parallelism per query.
    pub target_partitions: usize,
    /// Where query tokens are kept (an object-store URL); by default the catalog's
    /// own `_state/` when the catalog is writable, else the per-user state folder.
    pub state: Option<String>,
    /// Bytes of results kept in memory for replays (0 turns the cache off).
    pub result_cache_bytes: u64,
    /// Which rows only privileged callers see.
    pub embargo: Embargo,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: 2 << 30,
            spill_memory: 256 << 20,
            service_memory: crate::memory::half_of_physical(),
            spill_disk: 16 << 30,
            spill_dir: None,
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            state: None,
            result_cache_bytes: 256 << 20,
            embargo: Embargo::default(),
        }
    }
}

/// What a query asks beyond its ADQL.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// The snapshot to read (as the TAP parameter or `--as-of` gives it); must agree with
    /// any `FOR SYSTEM_TIME AS OF` in the ADQL.
    pub as_of: Option<adql::AsOf>,
    /// The most rows to return; more are cut and reported as an overflow.
    pub maxrec: Option<u64>,
    /// The longest the query may run, from when it is asked; past it, it fails.
    pub time_limit: Option<Duration>,
    /// Tables the query brings with it, read as `TAP_UPLOAD.<name>`.
    pub uploads: Vec<Upload>,
    /// Whether the caller may see embargoed rows.
    pub privileged: bool,
    /// Plan the query with DataFusion even when it is an id lookup the engine
    /// reads directly (to compare the two paths).
    pub always_plan: bool,
}

/// How a token is replayed.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Serve the result from memory when this engine has it (it is checked all the same).
    pub use_cache: bool,
    /// The longest the replay may run; past it, it fails.
    pub time_limit: Option<Duration>,
    /// Whether the caller may see embargoed rows (needed to replay a result that holds some).
    pub privileged: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            use_cache: true,
            time_limit: None,
            privileged: false,
        }
    }
}

/// Where a query's time went before execution.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// ADQL parsing, checking and rewriting.
    pub parse: Duration,
    /// Choosing the snapshot and its tables.
    pub pin: Duration,
    /// Logical planning and optimisation.
    pub plan: Duration,
    /// Physical planning (file and row-group pruning happens here).
    pub physical: Duration,
    /// Writing the token record, after the last row.
    pub record: Duration,
}

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
    /// what its values are known to be (see [`crate::lineage`]).
    columns: Vec<ColumnInfo>,
    rows: Rows,
    maxrec: Option<u64>,
    sent: u64,
    overflow: bool,
    checksum: Option<Checksum>,
    end: End,
    finished: Option<Finished>,
    keep: Option<Keep>,
}

enum Rows {
    Live(SendableRecordBatchStream),
    Cached(std::vec::IntoIter<RecordBatch>),
}

/// What happens after the last row.
enum End {
    Nothing,
    /// A first run: store the record (or check it against the one stored).
    Record {
        store: StateStore,
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
struct Keep {
    cache: ResultCache,
    batches: Vec<RecordBatch>,
    bytes: u64,
    limit: u64,
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

struct Cached {
    schema: SchemaRef,
    columns: Vec<ColumnInfo>,
    batches: Vec<RecordBatch>,
    bytes: u64,
    overflow: bool,
}

type ResultCache = moka::sync::Cache<String, Arc<Cached>>;

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

    async fn end_of_rows(&mut self) -> Option<Result<RecordBatch>> {
        let end = std::mem::replace(&mut self.end, End::Done);
        match self.finish(end).await {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }

    async fn finish(&mut self, end: End) -> Result<()> {
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
            End::Record { store, mut record } => {
                let t = std::time::Instant::now();
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

fn check(token: &str, record: &TokenRecord, rows: u64, checksum: &str) -> Result<()> {
    if record.rows == rows && record.checksum == checksum {
        return Ok(());
    }
    Err(Error::Mismatch {
        token: token.to_string(),
        expected_rows: record.rows,
        expected: record.checksum.clone(),
        rows,
        actual: checksum.to_string(),
    })
}

/// Opens catalogs for queries.
pub struct Engine {
    catalog: Arc<Catalog>,
    base: SessionState,
    adql_tables: Vec<adql::Table>,
    served: Vec<tables::Served>,
    tap: Vec<(&'static str, Arc<dyn TableProvider>)>,
    /// Metadata of the served and `TAP_SCHEMA` columns, by `("schema.table", column)`.
    column_infos: HashMap<(String, String), ColumnInfo>,
    store_url: ObjectStoreUrl,
    reader: Arc<CachedParquetFileReaderFactory>,
    /// The tables per snapshot and embargo cutoff (as bits).
    pinned: moka::sync::Cache<(u64, Option<u64>, u64), Arc<dyn CatalogProviderList>>,
    embargo: Embargo,
    state: StateStore,
    /// The secret tokens are keyed with (from the state store, on first use).
    secret: tokio::sync::OnceCell<Arc<Vec<u8>>>,
    results: ResultCache,
    result_limit: u64,
    schema_version: String,
    memory_limit: usize,
    spill_memory: usize,
    shared_memory: Arc<crate::memory::SharedMemory>,
}

impl Engine {
    /// Opens an existing catalog (a path or an object-store URL) for queries.
    pub async fn open(url: &str) -> Result<Engine> {
        Engine::open_with(url, EngineOptions::default()).await
    }

    /// Opens an existing catalog with explicit options.
    pub async fn open_with(url: &str, options: EngineOptions) -> Result<Engine> {
        let catalog = Arc::new(Catalog::open(url).await?);
        Engine::with_catalog(catalog, options)
    }

    /// Serves an already opened catalog.
    pub fn with_catalog(catalog: Arc<Catalog>, options: EngineOptions) -> Result<Engine> {
        let schema = catalog.schema().clone();
        let state = match &options.state {
            Some(url) => StateStore::open(url)?,
            None if writable(catalog.location()) => StateStore::in_catalog(catalog.location()),
            None => StateStore::user_default()?,
        };
        let results = moka::sync::Cache::builder()
            .max_capacity(options.result_cache_bytes)
            .weigher(|_: &String, c: &Arc<Cached>| u32::try_from(c.bytes).unwrap_or(u32::MAX))
            .build();
        let mut config = SessionConfig::new()
            .with_target_partitions(options.target_partitions.max(1))
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false);
        {
            let o = config.options_mut();
            // Names arrive resolved to their exact spelling from the adql crate.
            o.sql_parser.enable_ident_normalization = false;
            // Planner errors then carry the line and column of what they are about.
            o.sql_parser.collect_spans = true;
            o.execution.parquet.pushdown_filters = true;
            o.execution.parquet.reorder_filters = true;
            o.execution.parquet.enable_page_index = true;
            o.execution.parquet.bloom_filter_on_read = false;
            // Scans already spread their files over target_partitions groups; a round-robin
            // shuffle on top only costs small queries time.
            o.optimizer.enable_round_robin_repartition = false;
            // A top-k pushes its current bound into the scan as a filter; under the
            // pinned form's order over every output column that filter is a
            // lexicographic comparison of ~100 columns evaluated on every row:
            // `SELECT * FROM ppdb.DiaSource` cut at 3000 rows took 215 s with it
            // and 6 s without (1.08e6 rows).
            o.optimizer.enable_topk_dynamic_filter_pushdown = false;
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(options.memory_limit, 1.0)
            .with_disk_manager_builder(crate::spill::disk_manager(
                options.spill_dir.as_deref(),
                options.spill_disk,
            ))
            .build_arc()?;
        let store_url = ObjectStoreUrl::parse("ppdb://catalog")?;
        let store = catalog.location().store.clone();
        runtime.register_object_store(store_url.as_ref(), store.clone());
        let reader = Arc::new(CachedParquetFileReaderFactory::new(
            store,
            runtime.cache_manager.get_file_metadata_cache(),
        ));
        let mut base = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_analyzer_rules(crate::types::analyzer_rules())
            .build();
        for f in crate::udf::all() {
            base.register_udf(Arc::new(f))?;
        }
        for f in crate::aggregate::all() {
            base.register_udaf(Arc::new(f))?;
        }
        let tap_batches = tables::tap_schema(&schema);
        let column_infos = tables::column_infos(&tap_batches);
        let tap = tap_batches
            .iter()
            .map(
                |(name, batch)| -> Result<(&'static str, Arc<dyn TableProvider>)> {
                    let t = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])?;
                    Ok((*name, Arc::new(t) as Arc<dyn TableProvider>))
                },
            )
            .collect::<Result<Vec<_>>>()?;
        // TAP_SCHEMA is generated by this engine, not stored in the catalog: its
        // digest joins the schema version, so a token made before TAP_SCHEMA changed
        // is refused clearly instead of failing its checksum.
        let mut digest = crate::checksum::Checksum::new(true);
        for (name, batch) in &tap_batches {
            digest.update(&RecordBatch::try_new(
                Arc::new(arrow::datatypes::Schema::new(vec![
                    arrow::datatypes::Field::new("table", arrow::datatypes::DataType::Utf8, false),
                ])),
                vec![Arc::new(arrow::array::StringArray::from(vec![*name]))],
            )?);
            digest.update(batch);
        }
        let digest = digest.finish();
        let schema_version = format!(
            "{} / TAP_SCHEMA {}",
            schema.version(),
            &digest[digest.len() - 8..]
        );
        Ok(Engine {
            schema_version,
            adql_tables: tables::adql_tables(&schema),
            served: tables::served(&schema),
            catalog,
            base,
            tap,
            column_infos,
            store_url,
            reader,
            pinned: moka::sync::Cache::builder()
                .max_capacity(64)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            state,
            secret: tokio::sync::OnceCell::new(),
            results,
            result_limit: options.result_cache_bytes / 8,
            memory_limit: options.memory_limit,
            spill_memory: options.spill_memory,
            shared_memory: crate::memory::SharedMemory::new(options.service_memory),
            embargo: options.embargo,
        })
    }

    /// Which rows only privileged callers see.
    pub fn embargo(&self) -> &Embargo {
        &self.embargo
    }

    /// The catalog being served.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The tables queries can name, with their columns (for the parser and for clients).
    pub fn tables(&self) -> &[adql::Table] {
        &self.adql_tables
    }

    /// Checks ADQL without running it.
    pub fn parse(&self, adql: &str) -> Result<adql::Query> {
        Ok(deep(|| adql::parse(adql, &self.adql_tables))?)
    }

    /// The tables a query may name: the served ones and its uploads.
    // A Vec, not a slice: the parser takes `&dyn SchemaInfo`, which needs a sized type.
    #[allow(clippy::owned_cow)]
    fn tables_with<'a>(&'a self, uploads: &[Upload]) -> Cow<'a, Vec<adql::Table>> {
        if uploads.is_empty() {
            return Cow::Borrowed(&self.adql_tables);
        }
        let mut all = self.adql_tables.clone();
        for u in uploads {
            all.push(tables::in_memory_table(
                UPLOAD_SCHEMA,
                &u.name,
                &u.batch.schema(),
            ));
        }
        Cow::Owned(all)
    }

    /// Keeps each upload in the state store (once per content), so that a token
    /// that read it can be replayed; returns what the record names.
    async fn keep_uploads(&self, uploads: &[Upload]) -> Result<Vec<UploadRef>> {
        let mut refs = Vec::new();
        for u in uploads {
            let digest = upload_digest(u)?;
            let key = format!("uploads/{digest}.parquet");
            if self.state.read(&key).await?.is_none() {
                let mut bytes = Vec::new();
                let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                    &mut bytes,
                    u.batch.schema(),
                    None,
                )?;
                w.write(&u.batch)?;
                w.close()?;
                self.state.write(&key, bytes.into()).await?;
            }
            refs.push(UploadRef {
                name: u.name.clone(),
                digest,
                rows: u.batch.num_rows() as u64,
            });
        }
        Ok(refs)
    }

    /// The uploads a token's record names, from the state store.
    async fn load_uploads(&self, token: &str, refs: &[UploadRef]) -> Result<Vec<Upload>> {
        let mut out = Vec::new();
        for r in refs {
            let key = format!("uploads/{}.parquet", r.digest);
            let bytes = self
                .state
                .read(&key)
                .await?
                .ok_or_else(|| Error::UploadGone {
                    token: token.to_string(),
                    name: r.name.clone(),
                    store: self.state.url().to_string(),
                    key: key.clone(),
                })?;
            let reader =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    bytes,
                )?
                .build()?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => {
                    return Err(Error::State {
                        message: format!("the stored upload '{}' ({key}) is empty", r.name),
                    });
                }
            };
            out.push(Upload {
                name: r.name.clone(),
                batch: arrow::compute::concat_batches(&schema, &batches)?,
            });
        }
        Ok(out)
    }

    /// Where this engine keeps query tokens.
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Runs one ADQL query in its pinned, reproducible form, and gives it a token.
    ///
    /// The query is pinned to one snapshot (the one it names, else the latest now)
    /// and given a total order where its rows would otherwise depend on execution
    /// order; that form is what runs, so this result and every replay agree. The
    /// token record is stored after the last row, with the row count and checksum.
    pub async fn query(&self, adql: &str, options: &QueryOptions) -> Result<QueryResult> {
        let t0 = Instant::now();
        let tables = self.tables_with(&options.uploads);
        let original = deep(|| adql::parse(adql, &*tables))?;
        let t1 = Instant::now();
        let (log, snapshot) = self.choose(adql, original.as_of.as_ref(), options).await?;
        let access = self.access(&log, snapshot.snapshot, &original, options.privileged);
        let cut = options.maxrec.is_some() && !order_is_fixed(&original);
        let pinned = deep(|| adql::pin(&original, &*tables, snapshot.snapshot, cut))?;
        let uploads = self.keep_uploads(&options.uploads).await?;
        let upload_identity: String = uploads
            .iter()
            .map(|u| format!("{}={};", u.name, u.digest))
            .collect();
        // The planner's form of the pinned ADQL (the ADQL crate derives both from the
        // same tree; the specification tests replay every query to prove they agree).
        let query = pinned.query;
        let schema_version = self.schema_version.clone();
        let token = Identity {
            catalog_id: &log.catalog_id,
            schema_version: &schema_version,
            adql,
            pinned_adql: &pinned.adql,
            snapshot: snapshot.snapshot,
            maxrec: options.maxrec,
            uploads: &upload_identity,
            embargo: access.cutoff,
        }
        .token(&self.token_secret().await?);
        let record = TokenRecord {
            format: crate::token::RECORD_FORMAT.into(),
            token: token.clone(),
            catalog_id: log.catalog_id.clone(),
            catalog_url: self.catalog.url().to_string(),
            schema_version,
            adql: adql.to_string(),
            pinned_adql: pinned.adql.clone(),
            snapshot: snapshot.snapshot,
            snapshot_time: snapshot.committed_at,
            maxrec: options.maxrec,
            response_format: None,
            rows: 0,
            overflow: false,
            checksum: String::new(),
            created_at: Utc::now(),
            uploads,
            embargo_cutoff: access.cutoff,
            embargoed_until: access.until,
        };
        let t2 = Instant::now();
        let limit = options.time_limit.map(|d| (t0 + d, d));
        let mut result = self
            .execute(
                adql,
                query,
                snapshot,
                access.cutoff,
                options.maxrec,
                limit,
                &options.uploads,
                options.always_plan,
            )
            .await?;
        result.timings.parse = t1 - t0;
        result.timings.pin = t2 - t1 + result.timings.pin;
        result.token = Some(token);
        result.pinned_adql = Some(pinned.adql);
        result.checksum = Some(Checksum::new(pinned.ordered));
        result.keep = self.keep();
        result.end = End::Record {
            store: self.state.clone(),
            record: Box::new(record),
        };
        Ok(result)
    }

    /// Runs ADQL as written, with no token and no added order: what a query costs
    /// without the reproducibility guarantees (for benchmarks and comparisons).
    pub async fn query_unpinned(&self, adql: &str, options: &QueryOptions) -> Result<QueryResult> {
        let t0 = Instant::now();
        let query = deep(|| adql::parse(adql, &*self.tables_with(&options.uploads)))?;
        let t1 = Instant::now();
        let (log, snapshot) = self.choose(adql, query.as_of.as_ref(), options).await?;
        let access = self.access(&log, snapshot.snapshot, &query, options.privileged);
        let limit = options.time_limit.map(|d| (t0 + d, d));
        let mut result = self
            .execute(
                adql,
                query,
                snapshot,
                access.cutoff,
                options.maxrec,
                limit,
                &options.uploads,
                options.always_plan,
            )
            .await?;
        result.timings.parse = t1 - t0;
        result.end = End::Nothing;
        Ok(result)
    }

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
        let (_, snapshot) = self
            .choose(
                &record.pinned_adql,
                query.as_of.as_ref(),
                &QueryOptions::default(),
            )
            .await?;
        if snapshot.snapshot != record.snapshot {
            return Err(Error::Token {
                message: format!(
                    "the record of token {token} is inconsistent: it names snapshot {} but its ADQL reads {}",
                    record.snapshot, snapshot.snapshot
                ),
            });
        }
        let limit = options.time_limit.map(|d| (t0 + d, d));
        let mut result = self
            .execute(
                &record.pinned_adql,
                query,
                snapshot,
                record.embargo_cutoff,
                record.maxrec,
                limit,
                &uploads,
                false,
            )
            .await?;
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
            .ok_or_else(|| Error::UnknownToken {
                token: token.to_string(),
                store: self.state.url().to_string(),
            })?;
        let log = self.catalog.state().await?;
        if record.catalog_id != log.catalog_id {
            return Err(Error::ForeignToken {
                token: token.to_string(),
                made_on: format!("{} at {}", record.catalog_id, record.catalog_url),
                here: format!("{} at {}", log.catalog_id, self.catalog.url()),
            });
        }
        let version = &self.schema_version;
        if &record.schema_version != version {
            return Err(Error::Token {
                message: format!(
                    "token {token} was made with schema version {}; this server serves {version}",
                    record.schema_version
                ),
            });
        }
        Ok(record)
    }

    /// What the embargo does to a query at snapshot `k`.
    fn access(&self, log: &LogState, k: u64, query: &adql::Query, privileged: bool) -> Access {
        let stored = query.tables.iter().filter_map(|(schema, name)| {
            self.served
                .iter()
                .find(|t| t.schema == schema && t.name == name)
                .map(|t| t.stored)
        });
        embargo::access(&self.embargo, log, k, stored, privileged)
    }

    /// Refuses a caller without privilege a token whose result holds rows still embargoed.
    pub fn may_replay(&self, record: &TokenRecord, privileged: bool) -> Result<()> {
        match (record.embargoed_until, self.embargo.cutoff()) {
            (Some(until), Some(cutoff)) if !privileged && until > cutoff => Err(Error::Embargoed {
                token: record.token.clone(),
                until,
            }),
            _ => Ok(()),
        }
    }

    /// The state store's token secret, read (or made) once.
    async fn token_secret(&self) -> Result<Arc<Vec<u8>>> {
        self.secret
            .get_or_try_init(|| async { self.state.secret().await.map(Arc::new) })
            .await
            .cloned()
    }

    fn keep(&self) -> Option<Keep> {
        (self.result_limit > 0).then(|| Keep {
            cache: self.results.clone(),
            batches: Vec::new(),
            bytes: 0,
            limit: self.result_limit,
        })
    }

    /// Plans and starts a checked query at a snapshot; `limit` is its deadline and
    /// the time it was given.
    // Each argument is one independent setting of a run; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        text: &str,
        query: adql::Query,
        snapshot: SnapshotInfo,
        cutoff: Option<f64>,
        maxrec: Option<u64>,
        limit: Option<(Instant, Duration)>,
        uploads: &[Upload],
        always_plan: bool,
    ) -> Result<QueryResult> {
        let t1 = Instant::now();
        let direct = if !always_plan
            && cutoff.is_none()
            && uploads.is_empty()
            && let Some(lookup) = crate::lookup::recognise(&query.statement)
            && let Some(table) = self.served_table(snapshot.snapshot, &lookup.table).await?
        {
            crate::lookup::run(&table, &lookup).await
        } else {
            None
        };
        let (schema, stream, timings, columns) = match direct {
            Some(read) => {
                let (schema, stream) = read?;
                let timings = Timings {
                    pin: t1.elapsed(),
                    ..Timings::default()
                };
                // A direct read returns plain columns of its one table.
                let table = query.tables.first();
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| {
                        table
                            .and_then(|(s, t)| {
                                self.column_infos
                                    .get(&(format!("{s}.{t}"), f.name().clone()))
                            })
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                (schema, stream, timings, columns)
            }
            None => {
                self.start(
                    text,
                    &query,
                    snapshot.snapshot,
                    cutoff,
                    maxrec,
                    limit,
                    uploads,
                )
                .await?
            }
        };
        Ok(QueryResult {
            snapshot,
            schema,
            query,
            timings,
            token: None,
            pinned_adql: None,
            embargo_cutoff: cutoff,
            columns,
            rows: Rows::Live(stream),
            maxrec,
            sent: 0,
            overflow: false,
            checksum: None,
            end: End::Nothing,
            finished: None,
            keep: None,
        })
    }

    /// Plans a query with DataFusion and starts it: its schema, its rows, and
    /// the time each planning step took.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        text: &str,
        query: &adql::Query,
        k: u64,
        cutoff: Option<f64>,
        maxrec: Option<u64>,
        limit: Option<(Instant, Duration)>,
        uploads: &[Upload],
    ) -> Result<(
        SchemaRef,
        SendableRecordBatchStream,
        Timings,
        Vec<ColumnInfo>,
    )> {
        // Planning is CPU work that cannot be interrupted: off the runtime's
        // workers, so that a query that takes long to plan does not stop the
        // service from answering others.
        off_workers(async {
            let t1 = Instant::now();
            let state = self.session(k, cutoff, uploads).await?;
            let t2 = Instant::now();
            let plan = state
                .statement_to_plan(DfStatement::Statement(Box::new(query.statement.clone())))
                .await
                .map_err(|e| planner_refusal(text, e))?;
            let columns = crate::lineage::of(
                &plan,
                &Known {
                    columns: &self.column_infos,
                    uploads,
                },
            );
            let plan = match maxrec {
                // Above TOPK_ROWS the cut is left to the stream: the planner would turn
                // ORDER BY + LIMIT into a top-k that holds every row it keeps in
                // memory, where a sort spills.
                Some(m) if m <= TOPK_ROWS => LogicalPlanBuilder::from(plan)
                    .limit(0, Some(m.saturating_add(1) as usize))?
                    .build()?,
                _ => plan,
            };
            let schema = plan.schema().inner().clone();
            let plan = state
                .optimize(&plan)
                .map_err(|e| planner_refusal(text, e))?;
            let plan = crate::colocate::narrow(plan)?;
            let plan = if uploads.is_empty() {
                plan
            } else {
                crate::crossmatch::hint(plan, &state).await?
            };
            let t3 = Instant::now();
            let physical = state
                .query_planner()
                .create_physical_plan(&plan, &state)
                .await
                .map_err(|e| planner_refusal(text, e))?;
            let physical = match limit {
                Some((deadline, allowed)) => crate::deadline::limit(physical, deadline, allowed)?,
                None => physical,
            };
            let t4 = Instant::now();
            let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
            let timings = Timings {
                parse: Duration::ZERO,
                pin: t2 - t1,
                plan: t3 - t2,
                physical: t4 - t3,
                record: Duration::ZERO,
            };
            Ok((schema, stream, timings, columns))
        })
        .await
    }

    /// Plans a query (in its pinned form) without running it, and returns its
    /// physical plan (what `EXPLAIN` shows): refusals come out as from [`Engine::query`].
    pub async fn explain(&self, adql: &str, options: &QueryOptions) -> Result<String> {
        let (physical, _) = self.physical_plan(adql, options).await?;
        Ok(DisplayableExecutionPlan::new(physical.as_ref())
            .indent(true)
            .to_string())
    }

    /// Runs a query (in its pinned form) and returns its physical plan with execution
    /// metrics (what `EXPLAIN ANALYZE` shows): for operators and tests of pruning.
    pub async fn explain_analyze(&self, adql: &str, options: &QueryOptions) -> Result<String> {
        let (physical, state) = self.physical_plan(adql, options).await?;
        let mut stream =
            datafusion::physical_plan::execute_stream(physical.clone(), state.task_ctx())?;
        while let Some(b) = stream.next().await {
            b?;
        }
        Ok(
            DisplayableExecutionPlan::with_metrics(physical.as_ref() as &dyn ExecutionPlan)
                .indent(true)
                .to_string(),
        )
    }

    async fn physical_plan(
        &self,
        adql: &str,
        options: &QueryOptions,
    ) -> Result<(Arc<dyn ExecutionPlan>, SessionState)> {
        let tables = self.tables_with(&options.uploads);
        let original = deep(|| adql::parse(adql, &*tables))?;
        let (log, snapshot) = self.choose(adql, original.as_of.as_ref(), options).await?;
        let access = self.access(&log, snapshot.snapshot, &original, options.privileged);
        let query = deep(|| adql::pin(&original, &*tables, snapshot.snapshot, false))?.query;
        let state = self
            .session(snapshot.snapshot, access.cutoff, &options.uploads)
            .await?;
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(query.statement)))
            .await
            .map_err(|e| planner_refusal(adql, e))?;
        let plan = state
            .optimize(&plan)
            .map_err(|e| planner_refusal(adql, e))?;
        let plan = crate::colocate::narrow(plan)?;
        let plan = crate::crossmatch::hint(plan, &state).await?;
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await
            .map_err(|e| planner_refusal(adql, e))?;
        Ok((physical, state))
    }

    /// The snapshot a query reads: the one it asks for, else the latest now.
    pub async fn resolve_snapshot(&self, as_of: Option<&adql::AsOf>) -> Result<SnapshotInfo> {
        let state = self.catalog.state().await?;
        resolve(&state, as_of)
    }

    /// The snapshot for a query and its request, which must agree.
    async fn choose(
        &self,
        text: &str,
        in_query: Option<&adql::AsOf>,
        options: &QueryOptions,
    ) -> Result<(Arc<LogState>, SnapshotInfo)> {
        self.choose_snapshot(in_query, options)
            .await
            .map_err(|e| match e {
                // The query's own FOR SYSTEM_TIME AS OF is what names the snapshot.
                Error::Snapshot { message } if in_query.is_some() => {
                    let mut refusal = adql::Error::whole(text, message);
                    if let Some((line, column)) = adql::locate_word(text, "SYSTEM_TIME") {
                        (refusal.line, refusal.column) = (line, column);
                    }
                    Error::Adql(refusal)
                }
                e => e,
            })
    }

    async fn choose_snapshot(
        &self,
        in_query: Option<&adql::AsOf>,
        options: &QueryOptions,
    ) -> Result<(Arc<LogState>, SnapshotInfo)> {
        let log = self.catalog.state().await?;
        let snapshot = match (in_query, &options.as_of) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (resolve(&log, Some(a))?, resolve(&log, Some(b))?);
                if sa.snapshot != sb.snapshot {
                    return Err(Error::Snapshot {
                        message: format!(
                            "the query reads snapshot {} (FOR SYSTEM_TIME AS OF) but the request asks for snapshot {}",
                            sa.snapshot, sb.snapshot
                        ),
                    });
                }
                sa
            }
            (a, b) => resolve(&log, a.or(b.as_ref()))?,
        };
        Ok((log, snapshot))
    }

    /// A session whose catalog holds the tables at snapshot `k`, and the uploads.
    async fn session(
        &self,
        k: u64,
        cutoff: Option<f64>,
        uploads: &[Upload],
    ) -> Result<SessionState> {
        let mut list = self.catalog_list(k, cutoff).await?;
        if !uploads.is_empty() {
            list = with_uploads(&list, uploads)?;
        }
        let mut runtime = RuntimeEnv::clone(self.base.runtime_env());
        runtime.memory_pool = Arc::new(QueryPool::new(
            self.memory_limit,
            self.spill_memory,
            self.shared_memory.clone(),
        ));
        Ok(SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(list)
            .with_runtime_env(Arc::new(runtime))
            .build())
    }

    /// The tables at one snapshot, as a caller subject to `cutoff` sees them;
    /// built once per snapshot and cutoff, and kept.
    async fn catalog_list(
        &self,
        k: u64,
        cutoff: Option<f64>,
    ) -> Result<Arc<dyn CatalogProviderList>> {
        // The query chose its snapshot from a state read just now: that one (or
        // a newer) is what is known. A compaction or expiry since the list was
        // built replaced files it names, so the layout is part of the key.
        let known = self.catalog.known_state().await;
        let key = (k, cutoff.map(f64::to_bits), known.layout_version);
        if let Some(list) = self.pinned.get(&key) {
            return Ok(list);
        }
        let state = if known.catalog_id.is_empty() {
            self.catalog.state().await?
        } else {
            known
        };
        let index = self.catalog.anchor_index(&state).await?;
        let schema = self.catalog.schema();
        let cat = MemoryCatalogProvider::new();
        let mut schemas: Vec<(&str, Arc<MemorySchemaProvider>)> = Vec::new();
        let mut schema_of = |name: &'static str| -> Arc<MemorySchemaProvider> {
            if let Some((_, s)) = schemas.iter().find(|(n, _)| *n == name) {
                return s.clone();
            }
            let s = Arc::new(MemorySchemaProvider::new());
            schemas.push((name, s.clone()));
            s
        };
        for t in &self.served {
            let ts = schema.table(t.stored);
            let (scan, embargo) = match cutoff {
                None => (self.catalog.scan(&state, t.stored, k)?, None),
                // A caller subject to the embargo reads every table as it stood at
                // the cutoff: at the last snapshot whose chunks all came before it.
                // Rows and every column of them are then as they were, including
                // those that update records of later chunks changed (withdrawals,
                // reassociations, closed versions), which a filter on the rows'
                // own times cannot hide. Such a snapshot may lag the cutoff by a
                // chunk, never lead it.
                Some(c) => {
                    let public = embargo::public_snapshot(&state, c, k);
                    let mut scan = self.catalog.scan(&state, t.stored, k)?;
                    if public < k {
                        match self.catalog.scan(&state, t.stored, public) {
                            Ok(s) => scan = s,
                            // Nothing public yet, or that snapshot is expired: show nothing.
                            Err(_) => {
                                scan.snapshot = public;
                                scan.files.clear();
                            }
                        }
                    }
                    // The rows' own times cut too: what a chunk before the cutoff
                    // holds was observed before it, and this keeps it so.
                    let by_time = match embargo::timing(t.stored) {
                        Timing::Column(column) => Some((column, c)),
                        Timing::Chunk => None,
                    };
                    (scan, by_time)
                }
            };
            let scan = Arc::new(scan);
            let provider = PpdbTable {
                view: if t.current_only {
                    View::Current
                } else {
                    View::All
                },
                scan,
                served: ts.arrow.clone(),
                physical: ts.physical.clone(),
                index: index.clone(),
                store_url: self.store_url.clone(),
                prefix: self.catalog.location().prefix.clone(),
                reader: self.reader.clone(),
                hints: Vec::new(),
                partitions: None,
                embargo,
            };
            schema_of(t.schema).register_table(t.name.to_string(), Arc::new(provider))?;
        }
        let tap = schema_of("TAP_SCHEMA");
        for (name, t) in &self.tap {
            tap.register_table(name.to_string(), t.clone())?;
        }
        for (name, s) in schemas {
            cat.register_schema(name, s)?;
        }
        let list = Arc::new(MemoryCatalogProviderList::new());
        list.register_catalog("datafusion".into(), Arc::new(cat));
        let list: Arc<dyn CatalogProviderList> = list;
        self.pinned.insert(key, list.clone());
        Ok(list)
    }

    /// A served table at snapshot `k` as every caller sees it, if it is one of the catalog's.
    async fn served_table(&self, k: u64, name: &(String, String)) -> Result<Option<PpdbTable>> {
        let list = self.catalog_list(k, None).await?;
        let Some(schema) = list.catalog("datafusion").and_then(|c| c.schema(&name.0)) else {
            return Ok(None);
        };
        let Some(table) = schema.table(&name.1).await? else {
            return Ok(None);
        };
        let table: &dyn std::any::Any = table.as_ref();
        Ok(table.downcast_ref::<PpdbTable>().cloned())
    }
}

/// Runs `f` on the current thread with the runtime's other tasks moved to
/// another worker (on a multi-threaded runtime; as is on a single-threaded one).
async fn off_workers<F: std::future::Future>(f: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| handle.block_on(f))
    } else {
        f.await
    }
}

/// A catalog list with the same schemas as `list`, plus `TAP_UPLOAD`.
fn with_uploads(
    list: &Arc<dyn CatalogProviderList>,
    uploads: &[Upload],
) -> Result<Arc<dyn CatalogProviderList>> {
    let cat = MemoryCatalogProvider::new();
    if let Some(base) = list.catalog("datafusion") {
        for name in base.schema_names() {
            if let Some(s) = base.schema(&name) {
                cat.register_schema(&name, s)?;
            }
        }
    }
    let up = Arc::new(MemorySchemaProvider::new());
    for u in uploads {
        let t = MemTable::try_new(u.batch.schema(), vec![vec![u.batch.clone()]])?;
        up.register_table(u.name.clone(), Arc::new(t))?;
    }
    cat.register_schema(UPLOAD_SCHEMA, up)?;
    let out = Arc::new(MemoryCatalogProviderList::new());
    out.register_catalog("datafusion".into(), Arc::new(cat));
    Ok(out)
}

/// Whether a query's rows come out in one fixed order without an ORDER BY: a
/// plain filter over one in-memory table (an upload or TAP_SCHEMA) reads it in
/// its one partition, in order. Such a query needs no added order for MAXREC to
/// cut the same rows every time, and keeps the order the table was given in
/// (clients check that an upload comes back as sent).
fn order_is_fixed(query: &adql::Query) -> bool {
    use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
    let in_memory =
        |(schema, _): &(String, String)| schema == UPLOAD_SCHEMA || schema == "TAP_SCHEMA";
    if query.tables.len() != 1 || !query.tables.iter().all(in_memory) {
        return false;
    }
    let Statement::Query(q) = &query.statement else {
        return false;
    };
    if q.with.is_some() {
        return false;
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    let no_grouping = match &select.group_by {
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, m) => {
            e.is_empty() && m.is_empty()
        }
        datafusion::sql::sqlparser::ast::GroupByExpr::All(_) => false,
    };
    select.from.len() == 1
        && select.from[0].joins.is_empty()
        && matches!(
            select.from[0].relation,
            datafusion::sql::sqlparser::ast::TableFactor::Table { .. }
        )
        && select.distinct.is_none()
        && no_grouping
}

/// What identifies an upload's content: its name, columns and rows.
fn upload_digest(u: &Upload) -> Result<String> {
    let mut c = Checksum::new(true);
    let names: Vec<String> = u
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    c.update(&RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("columns", arrow::datatypes::DataType::Utf8, false),
        ])),
        vec![Arc::new(arrow::array::StringArray::from(names))],
    )?);
    c.update(&u.batch);
    let text = c.finish();
    // "ordered:" + 32 hex digits: the hex names the stored file.
    Ok(text.rsplit(':').next().unwrap_or(&text).to_string())
}

/// Stack the ADQL passes may use: they recurse as deep as a query nests (a chain
/// of up to `adql::MAX_OPERATORS` operators), deeper than the 2 MiB of a tokio
/// worker allows. The memory is reserved, and only touched by deep queries.
const ADQL_STACK: usize = 64 << 20;

/// The stack a runtime's threads should have (reserved, touched only by deep
/// queries): with it, the ADQL passes run in place instead of on a stack
/// allocated for each query, which costs a few hundred microseconds.
pub const THREAD_STACK: usize = ADQL_STACK;

/// Runs an ADQL pass with at least half of [`ADQL_STACK`] free.
fn deep<T>(pass: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(ADQL_STACK / 2, ADQL_STACK, pass)
}

/// Finds the snapshot `as_of` names in a log state (the latest when `None`).
fn resolve(state: &LogState, as_of: Option<&adql::AsOf>) -> Result<SnapshotInfo> {
    let info = find(state, as_of)?;
    if state.is_expired(info.snapshot) {
        return Err(catalog::Error::SnapshotExpired {
            asked: info.snapshot,
            before: state.expired_before,
        }
        .into());
    }
    Ok(info)
}

fn find(state: &LogState, as_of: Option<&adql::AsOf>) -> Result<SnapshotInfo> {
    let snapshots = &state.snapshots;
    let none = || Error::Snapshot {
        message: "the catalog has no snapshots yet: ingest a chunk first".into(),
    };
    match as_of {
        None => snapshots.last().cloned().ok_or_else(none),
        Some(adql::AsOf::Snapshot(k)) => snapshots
            .iter()
            .find(|s| s.snapshot == *k)
            .cloned()
            .ok_or_else(|| Error::Snapshot {
                message: format!(
                    "no snapshot {k}: this catalog has snapshots {} to {}{}",
                    snapshots.first().map_or(0, |s| s.snapshot),
                    snapshots.last().map_or(0, |s| s.snapshot),
                    // A large whole number was likely meant as an MJD.
                    if *k > 40_000 {
                        format!(" (for the snapshot current at MJD {k}, write {k}.0)")
                    } else {
                        String::new()
                    }
                ),
            }),
        Some(adql::AsOf::Time(text)) => {
            let t = parse_time(text).ok_or_else(|| Error::Snapshot {
                message: format!(
                    "'{text}' is not an ISO-8601 UTC time (e.g. 2025-06-01T12:00:00Z)"
                ),
            })?;
            snapshots
                .iter()
                .rev()
                .find(|s| s.committed_at <= t)
                .cloned()
                .ok_or_else(|| Error::Snapshot {
                    message: match snapshots.first() {
                        Some(first) => format!(
                            "no snapshot was committed by {text}; the first was committed at {} \
                             (MJD {:.5} UTC; commit times are when data arrived, not when it \
                             was observed)",
                            first
                                .committed_at
                                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            mjd_utc(first.committed_at)
                        ),
                        None => "the catalog has no snapshots yet: ingest a chunk first".into(),
                    },
                })
        }
    }
}

/// Whether a catalog can hold its own state: object stores are taken to be;
/// a local folder is if a `_state` folder can be made and written in it.
fn writable(loc: &catalog::store::Location) -> bool {
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

/// Reads the snapshot a request names (`--as-of`, TAP's `AS_OF`): a snapshot
/// number, an MJD (UTC, with a decimal point: `61002.5`, or `MJD 61002`), or an
/// ISO-8601 UTC time; an MJD reads as the time it is.
pub fn as_of(text: &str) -> std::result::Result<adql::AsOf, String> {
    let t = text.trim();
    if let Ok(k) = t.parse::<u64>() {
        return Ok(adql::AsOf::Snapshot(k));
    }
    let mjd = t
        .strip_prefix("MJD")
        .or_else(|| t.strip_prefix("mjd"))
        .map(|m| m.trim_start_matches([':', ' ']))
        .or_else(|| t.contains('.').then_some(t));
    if let Some(m) = mjd
        && let Ok(days) = m.parse::<f64>()
    {
        // MJD 40587 is 1970-01-01T00:00:00 UTC.
        let micros = ((days - 40_587.0) * 86_400e6).round();
        if let Some(at) = (micros.is_finite() && micros.abs() < 9e18)
            .then(|| DateTime::<Utc>::from_timestamp_micros(micros as i64))
            .flatten()
        {
            return Ok(adql::AsOf::Time(
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ));
        }
    }
    if parse_time(t).is_some() {
        return Ok(adql::AsOf::Time(t.to_string()));
    }
    Err(format!(
        "'{t}' names no snapshot: give a snapshot number (12), an MJD in UTC with a \
         decimal point (61002.5, or MJD 61002), or an ISO-8601 UTC time \
         (2026-11-23T12:00:00Z)"
    ))
}

/// The MJD (UTC) of a time.
pub fn mjd_utc(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 86_400e6 + 40_587.0
}

/// Reads an ISO-8601 time; without a zone it is UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

impl Engine {
    /// What a result's columns are (units, UCDs, descriptions, shapes) and the
    /// `INFO`s that say where it came from, for the formats that carry them.
    pub fn describe(&self, result: &QueryResult) -> crate::format::Describe {
        let mut infos = vec![
            ("snapshot".into(), result.snapshot.snapshot.to_string()),
            (
                "snapshot_time".into(),
                result.snapshot.committed_at.to_rfc3339(),
            ),
        ];
        if let Some(t) = &result.token {
            infos.push(("query_token".into(), t.clone()));
        }
        if let Some(p) = &result.pinned_adql {
            infos.push(("pinned_adql".into(), p.clone()));
        }
        if let Some(cutoff) = result.embargo_cutoff {
            // Say so: a caller should know its result is not the whole catalog.
            infos.push(("embargo_cutoff_mjd_tai".into(), format!("{cutoff:.6}")));
            infos.push((
                "embargo".into(),
                format!(
                    "rows observed after MJD {cutoff:.6} (TAI) are embargoed: they, and \
                     changes made to rows after then, are left out of this result"
                ),
            ));
        }
        crate::format::Describe {
            columns: result.columns.clone(),
            infos,
            replay_url: None,
        }
    }
}

/// What the lineage of a result starts from: the columns of the served tables
/// and `TAP_SCHEMA`, and the uploads of this query.
struct Known<'a> {
    columns: &'a HashMap<(String, String), ColumnInfo>,
    uploads: &'a [Upload],
}

impl crate::lineage::Sources for Known<'_> {
    fn column(&self, schema: &str, table: &str, column: &str) -> Option<ColumnInfo> {
        if schema != UPLOAD_SCHEMA {
            return self
                .columns
                .get(&(format!("{schema}.{table}"), column.to_string()))
                .cloned();
        }
        let upload = self.uploads.iter().find(|u| u.name == table)?;
        let batch = &upload.batch;
        let i = batch.schema().index_of(column).ok()?;
        let field = batch.schema().field(i).clone();
        let meta = field.metadata();
        // Shown as sent: `unicodeChar` stays so, and `char` text must be ASCII to stay `char`.
        let ascii = !meta.contains_key(crate::upload::UNICODE)
            && batch
                .column(i)
                .as_string_opt::<i32>()
                .is_none_or(|a| a.values().is_ascii());
        Some(ColumnInfo {
            unit: meta.get(crate::upload::UNIT).cloned(),
            ucd: meta.get(crate::upload::UCD).cloned(),
            description: None,
            geometry: None,
            ascii,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{as_of, parse_time};

    #[test]
    fn a_snapshot_is_named_by_number_mjd_or_time() {
        assert_eq!(as_of("12"), Ok(adql::AsOf::Snapshot(12)));
        let want = adql::AsOf::Time("2026-11-23T12:00:00.000000Z".into());
        // MJD 61367.5 is 2026-11-23T12:00 UTC.
        assert_eq!(as_of("61367.5"), Ok(want.clone()));
        assert_eq!(as_of("MJD 61367.5"), Ok(want.clone()));
        assert_eq!(as_of("mjd:61367.5"), Ok(want));
        assert_eq!(
            as_of("2026-11-23T12:00:00Z"),
            Ok(adql::AsOf::Time("2026-11-23T12:00:00Z".into()))
        );
        let e = as_of("yesterday").unwrap_err();
        assert!(e.contains("snapshot number") && e.contains("MJD") && e.contains("ISO-8601"));
    }

    #[test]
    fn times_without_zone_are_utc() {
        let a = parse_time("2025-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_time("2025-01-02T03:04:05"), Some(a));
        assert_eq!(parse_time("2025-01-02 03:04:05"), Some(a));
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2025-01-02").is_some());
    }
}
