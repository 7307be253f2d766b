//! The engine: one DataFusion session template per catalog, and queries pinned to a snapshot.

use crate::options::{EngineOptions, QueryOptions};
use crate::plan::pipeline::{Run, deep, order_is_fixed};
use crate::result::{Cached, End, QueryResult, ResultCache};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::Catalog;
use catalog::log::{LogState, SnapshotInfo};
use chrono::Utc;
use datafusion::catalog::{CatalogProviderList, TableProvider};
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::session_state::SessionState;

use crate::encode::ColumnInfo;
use crate::error::Result;
use crate::scan::embargo::{self, Access, Embargo};
use crate::session::memory::counted;
use crate::session::tables;
use crate::session::tap_schema::TapSchema;
use crate::session::template;
use crate::tokens::checksum::Checksum;
use crate::tokens::state::StateStore;
use crate::tokens::token::{Identity, TokenRecord};

/// Queries longer than this (bytes) are parsed off the runtime's workers.
const LONG_QUERY: usize = 64 << 10;

/// A query ready to run (see [`Engine::prepare`]).
pub(crate) struct Prepared {
    pub(crate) log: Arc<LogState>,
    pub(crate) snapshot: SnapshotInfo,
    pub(crate) access: Access,
    pub(crate) pinned: adql::Pinned,
    /// When parsing ended.
    pub(crate) parsed: Instant,
}

/// Opens catalogs for queries.
pub struct Engine {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) base: SessionState,
    pub(crate) adql_tables: Vec<adql::Table>,
    pub(crate) served: Vec<tables::Served>,
    pub(crate) tap: Vec<(&'static str, Arc<dyn TableProvider>)>,
    /// Metadata of the served and `TAP_SCHEMA` columns, by `("schema.table", column)`.
    pub(crate) column_infos: HashMap<(String, String), ColumnInfo>,
    /// The longest text value of TAP_SCHEMA, for the cost of a query's rows.
    pub(crate) tap_text: usize,
    pub(crate) store_url: ObjectStoreUrl,
    /// Where `ivoa.ObsCore` links each detector-visit to (see [`EngineOptions::links_url`]).
    pub(crate) links_url: Option<String>,
    pub(crate) reader: Arc<CachedParquetFileReaderFactory>,
    pub(crate) arrow_meta: crate::plan::direct::ArrowMeta,
    /// The tables per snapshot and embargo cutoff (as bits).
    pub(crate) pinned: moka::sync::Cache<(u64, Option<u64>, u64), Arc<dyn CatalogProviderList>>,
    pub(crate) embargo: Embargo,
    pub(crate) state: StateStore,
    /// The secret tokens are keyed with (from the state store, on first use).
    pub(crate) secret: tokio::sync::OnceCell<Arc<Vec<u8>>>,
    pub(crate) results: ResultCache,
    pub(crate) result_limit: u64,
    pub(crate) schema_version: String,
    pub(crate) memory_limit: usize,
    pub(crate) spill_memory: usize,
    pub(crate) shared_memory: Arc<crate::session::memory::SharedMemory>,
    /// Where planned queries execute (below the caller's priority).
    pub(crate) execution: crate::plan::runtime::Execution,
    /// Where queries spill; removed when the engine is dropped (last, after
    /// the session template whose disk manager writes there).
    _spill: crate::session::spill::SpillFolder,
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
            None if StateStore::catalog_may_hold(catalog.location()) => {
                StateStore::in_catalog(catalog.location())
            }
            None => StateStore::user_default()?,
        };
        let state = match options.state_limit {
            Some(limit) => state.bounded(limit),
            None => state,
        };
        let results = moka::sync::Cache::builder()
            .max_capacity(options.result_cache_bytes)
            .weigher(|_: &String, c: &Arc<Cached>| u32::try_from(c.bytes).unwrap_or(u32::MAX))
            .build();
        let (base, store_url, reader, spill) = template::build(&catalog, &options)?;
        let TapSchema {
            tables: tap,
            column_infos,
            widest_text: tap_text,
            schema_version,
        } = TapSchema::of(&schema)?;
        Ok(Engine {
            schema_version,
            adql_tables: tables::adql_tables(&schema),
            served: tables::served(&schema),
            catalog,
            base,
            tap,
            column_infos,
            tap_text,
            store_url,
            reader,
            arrow_meta: crate::plan::direct::arrow_meta_cache(),
            pinned: moka::sync::Cache::builder()
                .max_capacity(64)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            state,
            secret: tokio::sync::OnceCell::new(),
            results,
            result_limit: options.result_cache_bytes / 8,
            memory_limit: counted(options.memory_limit),
            spill_memory: counted(options.spill_memory),
            shared_memory: crate::session::memory::SharedMemory::new(counted(
                options.service_memory,
            )),
            embargo: options.embargo,
            links_url: options.links_url,
            execution: crate::plan::runtime::Execution::new(options.target_partitions.max(1))?,
            _spill: spill,
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
        // Its record (the ADQL as written and pinned) must be kept: refuse now,
        // not after the rows were sent.
        let uploaded: usize = options
            .uploads
            .iter()
            .map(|u| u.batch.get_array_memory_size())
            .sum();
        self.state
            .room_for((2 * adql.len() + uploaded) as u64 + 4096)
            .await?;
        let Prepared {
            log,
            snapshot,
            access,
            pinned,
            parsed: t1,
        } = self.prepare(adql, options).await?;
        let uploads = crate::tokens::uploads::upload_refs(&options.uploads)?;
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
            format: crate::tokens::token::RECORD_FORMAT.into(),
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
        let run = Run::asked(adql, snapshot.snapshot, access.cutoff, options, t0);
        let mut result = self.execute(query, snapshot, run).await?;
        result.timings.parse = t1 - t0;
        result.timings.pin = t2 - t1 + result.timings.pin;
        result.token = Some(token);
        result.pinned_adql = Some(pinned.adql);
        result.checksum = Some(Checksum::new(pinned.ordered));
        result.keep = self.keep();
        result.end = End::Record {
            store: self.state.clone(),
            uploads: options.uploads.clone(),
            record: Box::new(record),
        };
        Ok(result)
    }

    /// A query made ready to run: parsed and checked, its snapshot chosen, what
    /// the embargo does to it decided, and pinned (with a total order where a
    /// MAXREC cut needs one).
    pub(crate) async fn prepare(&self, adql: &str, options: &QueryOptions) -> Result<Prepared> {
        let tables = self.tables_with(&options.uploads);
        // Tokenising is linear but not free (a 2 MB query dense with tokens
        // takes seconds): a long text is parsed off the runtime's workers, so
        // that eight of them do not stop the service answering others.
        let original = if adql.len() > LONG_QUERY {
            crate::plan::pipeline::in_place(async { deep(|| adql::parse(adql, &*tables)) }).await?
        } else {
            deep(|| adql::parse(adql, &*tables))?
        };
        let parsed = Instant::now();
        let (log, snapshot) = self.choose(adql, original.as_of.as_ref(), options).await?;
        let access = self.access(&log, snapshot.snapshot, &original, options.privileged);
        let cut = options.maxrec.is_some() && !order_is_fixed(&original);
        let pinned = deep(|| adql::pin(&original, &*tables, snapshot.snapshot, cut))?;
        Ok(Prepared {
            log,
            snapshot,
            access,
            pinned,
            parsed,
        })
    }

    /// Runs ADQL as written, with no token and no added order: what a query costs
    /// without the reproducibility guarantees (for benchmarks and comparisons).
    pub async fn query_unpinned(&self, adql: &str, options: &QueryOptions) -> Result<QueryResult> {
        let t0 = Instant::now();
        let query = deep(|| adql::parse(adql, &*self.tables_with(&options.uploads)))?;
        let t1 = Instant::now();
        let (log, snapshot) = self.choose(adql, query.as_of.as_ref(), options).await?;
        let access = self.access(&log, snapshot.snapshot, &query, options.privileged);
        let run = Run::asked(adql, snapshot.snapshot, access.cutoff, options, t0);
        let mut result = self.execute(query, snapshot, run).await?;
        result.timings.parse = t1 - t0;
        result.end = End::Nothing;
        Ok(result)
    }

    /// What the embargo does to a query at snapshot `k`.
    pub(crate) fn access(
        &self,
        log: &LogState,
        k: u64,
        query: &adql::Query,
        privileged: bool,
    ) -> Access {
        let stored = query.tables.iter().filter_map(|(schema, name)| {
            self.served
                .iter()
                .find(|t| t.schema == schema && t.name == name)
                .map(|t| t.stored)
        });
        // The view reads the detector-visits and the DIA rows made on them.
        let views = query.tables.iter().filter(|(schema, name)| {
            schema == crate::session::obscore::SCHEMA && name == crate::session::obscore::NAME
        });
        let stored = stored.chain(views.flat_map(|_| crate::session::obscore::READS));
        embargo::access(&self.embargo, log, k, stored, privileged)
    }
}
