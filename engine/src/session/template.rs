//! The session template every query's session starts from: DataFusion's
//! options as this engine needs them, the runtime (memory, spill disk, the
//! catalog's object store), the registered rules and functions.

use std::sync::Arc;

use catalog::Catalog;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;

use crate::error::Result;
use crate::options::EngineOptions;
use crate::session::spill::SpillFolder;

/// The template session for `catalog`, the URL its object store is registered
/// under, the Parquet reader that caches file metadata, and the spill folder.
pub(crate) fn build(
    catalog: &Catalog,
    options: &EngineOptions,
) -> Result<(
    SessionState,
    ObjectStoreUrl,
    Arc<CachedParquetFileReaderFactory>,
    SpillFolder,
)> {
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
    let (disk, spill) =
        crate::session::spill::disk_manager(options.spill_dir.as_deref(), options.spill_disk);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(options.memory_limit, 1.0)
        .with_disk_manager_builder(disk)
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
        .with_analyzer_rules(crate::plan::types::analyzer_rules())
        .with_optimizer_rule(Arc::new(crate::plan::registered::Colocate))
        .with_query_planner(Arc::new(crate::plan::registered::CrossmatchPlanner))
        .build();
    for f in crate::functions::udf::all() {
        base.register_udf(Arc::new(f))?;
    }
    for f in crate::functions::aggregate::all() {
        base.register_udaf(Arc::new(f))?;
    }
    Ok((base, store_url, reader, spill))
}
