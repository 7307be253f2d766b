//! The engine: one DataFusion session template per catalog, and queries pinned to a snapshot.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use catalog::Catalog;
use catalog::log::SnapshotInfo;
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
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::provider::{PpdbTable, View};
use crate::tables;

/// How the engine runs queries.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory the engine may use for query execution (sorts, joins, aggregates), in bytes.
    pub memory_limit: usize,
    /// Threads of parallelism per query.
    pub target_partitions: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: 4 << 30,
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
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
}

/// A running query: the snapshot it reads and a stream of its rows.
pub struct QueryResult {
    /// The snapshot the query read.
    pub snapshot: SnapshotInfo,
    /// The result columns.
    pub schema: SchemaRef,
    /// The validated, rewritten query.
    pub query: adql::Query,
    /// Time spent before the first row: parsing, pinning, planning.
    pub timings: Timings,
    stream: SendableRecordBatchStream,
    maxrec: Option<u64>,
    sent: u64,
    overflow: bool,
}

impl QueryResult {
    /// The next batch of rows, or `None` at the end (rows past MAXREC are cut).
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            let batch = match self.stream.next().await? {
                Ok(b) => b,
                Err(e) => return Some(Err(e.into())),
            };
            let Some(max) = self.maxrec else {
                self.sent += batch.num_rows() as u64;
                return Some(Ok(batch));
            };
            let room = max.saturating_sub(self.sent);
            if batch.num_rows() as u64 > room {
                self.overflow = true;
            }
            if room == 0 {
                return None;
            }
            let take = (batch.num_rows() as u64).min(room) as usize;
            self.sent += take as u64;
            return Some(Ok(batch.slice(0, take)));
        }
    }

    /// Whether MAXREC cut rows (known once the stream has ended).
    pub fn overflowed(&self) -> bool {
        self.overflow
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

/// Opens catalogs for queries.
pub struct Engine {
    catalog: Arc<Catalog>,
    base: SessionState,
    adql_tables: Vec<adql::Table>,
    served: Vec<tables::Served>,
    tap: Vec<(&'static str, Arc<dyn TableProvider>)>,
    store_url: ObjectStoreUrl,
    reader: Arc<CachedParquetFileReaderFactory>,
    pinned: moka::sync::Cache<u64, Arc<dyn CatalogProviderList>>,
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
        let mut config = SessionConfig::new()
            .with_target_partitions(options.target_partitions.max(1))
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false);
        {
            let o = config.options_mut();
            // Names arrive resolved to their exact spelling from the adql crate.
            o.sql_parser.enable_ident_normalization = false;
            o.execution.parquet.pushdown_filters = true;
            o.execution.parquet.reorder_filters = true;
            o.execution.parquet.enable_page_index = true;
            o.execution.parquet.bloom_filter_on_read = false;
            // Scans already spread their files over target_partitions groups; a round-robin
            // shuffle on top only costs small queries time.
            o.optimizer.enable_round_robin_repartition = false;
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(options.memory_limit, 1.0)
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
            .build();
        for f in crate::udf::all() {
            base.register_udf(Arc::new(f))?;
        }
        let tap = tables::tap_schema(&schema)
            .into_iter()
            .map(
                |(name, batch)| -> Result<(&'static str, Arc<dyn TableProvider>)> {
                    let t = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
                    Ok((name, Arc::new(t) as Arc<dyn TableProvider>))
                },
            )
            .collect::<Result<Vec<_>>>()?;
        Ok(Engine {
            adql_tables: tables::adql_tables(&schema),
            served: tables::served(&schema),
            catalog,
            base,
            tap,
            store_url,
            reader,
            pinned: moka::sync::Cache::builder()
                .max_capacity(64)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        })
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
        Ok(adql::parse(adql, &self.adql_tables)?)
    }

    /// Runs one ADQL query.
    pub async fn query(&self, adql: &str, options: &QueryOptions) -> Result<QueryResult> {
        let t0 = std::time::Instant::now();
        let query = self.parse(adql)?;
        let t1 = std::time::Instant::now();
        let (state, snapshot) = self.pin(&query, options).await?;
        let t2 = std::time::Instant::now();
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(query.statement.clone())))
            .await?;
        let plan = match options.maxrec {
            // One row past MAXREC tells an overflow from an exact fit.
            Some(m) => LogicalPlanBuilder::from(plan)
                .limit(0, Some(m.saturating_add(1) as usize))?
                .build()?,
            None => plan,
        };
        let schema = plan.schema().inner().clone();
        let plan = state.optimize(&plan)?;
        let t3 = std::time::Instant::now();
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await?;
        let t4 = std::time::Instant::now();
        let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
        Ok(QueryResult {
            snapshot,
            schema,
            query,
            timings: Timings {
                parse: t1 - t0,
                pin: t2 - t1,
                plan: t3 - t2,
                physical: t4 - t3,
            },
            stream,
            maxrec: options.maxrec,
            sent: 0,
            overflow: false,
        })
    }

    /// Runs a query and returns its physical plan with execution metrics
    /// (what `EXPLAIN ANALYZE` shows): for operators and tests of pruning.
    pub async fn explain_analyze(&self, adql: &str, options: &QueryOptions) -> Result<String> {
        let query = self.parse(adql)?;
        let (state, _) = self.pin(&query, options).await?;
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(query.statement)))
            .await?;
        let physical = state.create_physical_plan(&plan).await?;
        let mut stream =
            datafusion::physical_plan::execute_stream(physical.clone(), state.task_ctx())?;
        while let Some(b) = stream.next().await {
            b?;
        }
        Ok(displayable(physical.as_ref() as &dyn ExecutionPlan)
            .indent(true)
            .to_string())
    }

    /// The snapshot a query reads: the one it asks for, else the latest now.
    pub async fn resolve_snapshot(&self, as_of: Option<&adql::AsOf>) -> Result<SnapshotInfo> {
        let state = self.catalog.state().await?;
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
                        "no snapshot {k}: this catalog has snapshots {} to {}",
                        snapshots.first().map_or(0, |s| s.snapshot),
                        snapshots.last().map_or(0, |s| s.snapshot)
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
                        message: format!(
                            "no snapshot was committed by {text}; the first was committed at {}",
                            snapshots
                                .first()
                                .map_or("(none)".to_string(), |s| s.committed_at.to_rfc3339())
                        ),
                    })
            }
        }
    }

    async fn pin(
        &self,
        query: &adql::Query,
        options: &QueryOptions,
    ) -> Result<(SessionState, SnapshotInfo)> {
        let as_of = match (&query.as_of, &options.as_of) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (
                    self.resolve_snapshot(Some(a)).await?,
                    self.resolve_snapshot(Some(b)).await?,
                );
                if sa.snapshot != sb.snapshot {
                    return Err(Error::Snapshot {
                        message: format!(
                            "the query reads snapshot {} (FOR SYSTEM_TIME AS OF) but the request asks for snapshot {}",
                            sa.snapshot, sb.snapshot
                        ),
                    });
                }
                Some(a.clone())
            }
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let snapshot = self.resolve_snapshot(as_of.as_ref()).await?;
        let list = self.catalog_list(snapshot.snapshot).await?;
        let state = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(list)
            .build();
        Ok((state, snapshot))
    }

    /// The tables at one snapshot; built once per snapshot and kept.
    async fn catalog_list(&self, k: u64) -> Result<Arc<dyn CatalogProviderList>> {
        if let Some(list) = self.pinned.get(&k) {
            return Ok(list);
        }
        let state = self.catalog.state().await?;
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
            let scan = Arc::new(self.catalog.scan(&state, t.stored, k)?);
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
        self.pinned.insert(k, list.clone());
        Ok(list)
    }
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

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_without_zone_are_utc() {
        let a = parse_time("2025-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_time("2025-01-02T03:04:05"), Some(a));
        assert_eq!(parse_time("2025-01-02 03:04:05"), Some(a));
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2025-01-02").is_some());
    }
}

impl Engine {
    /// Unit, UCD and description of each result column, from the tables the query read.
    pub fn describe(&self, result: &QueryResult) -> crate::format::Describe {
        let schema = self.catalog.schema();
        let read: Vec<&tables::Served> = result
            .query
            .tables
            .iter()
            .filter_map(|(s, n)| self.served.iter().find(|t| t.schema == s && t.name == n))
            .collect();
        let columns = result
            .schema
            .fields()
            .iter()
            .map(|f| {
                read.iter()
                    .find_map(|t| schema.table(t.stored).felis.column(f.name()))
                    .map(|c| crate::format::ColumnInfo {
                        unit: c.unit.clone(),
                        ucd: c.ucd.clone(),
                        description: Some(c.description.clone()),
                    })
                    .unwrap_or_default()
            })
            .collect();
        crate::format::Describe {
            columns,
            infos: vec![
                ("snapshot".into(), result.snapshot.snapshot.to_string()),
                (
                    "snapshot_time".into(),
                    result.snapshot.committed_at.to_rfc3339(),
                ),
            ],
        }
    }
}
