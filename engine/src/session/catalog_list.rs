//! The session a query runs in: the served tables at its snapshot, as its
//! caller may see them, and its uploads.

use crate::Engine;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};

use crate::error::Result;
use crate::plan::crossmatch::UPLOAD_SCHEMA;
use crate::scan::embargo::{self, Timing};
use crate::scan::provider::{PpdbTable, View};
use crate::session::memory::QueryPool;
use crate::upload::Upload;

impl Engine {
    /// A session whose catalog holds the tables at snapshot `k`, and the
    /// uploads, reading batches of `batch_rows` rows, its rules checking
    /// `interrupt` before each step.
    pub(crate) async fn session(
        &self,
        k: u64,
        cutoff: Option<f64>,
        uploads: &[Upload],
        batch_rows: usize,
        interrupt: &crate::plan::interrupt::Interrupt,
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
        let mut config = self.base.config().clone();
        if config.batch_size() != batch_rows {
            config = config.with_batch_size(batch_rows);
        }
        let builder = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_config(config)
            .with_catalog_list(list)
            .with_runtime_env(Arc::new(runtime));
        Ok(interrupt.wrap(builder, &self.base).build())
    }

    /// The tables at one snapshot, as a caller subject to `cutoff` sees them;
    /// built once per snapshot and cutoff, and kept.
    pub(crate) async fn catalog_list(
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
            let (scan, embargo, public_through) = match cutoff {
                None => (self.catalog.scan(&state, t.stored, k)?, None, None),
                // A caller subject to the embargo reads every table as it stood at
                // the cutoff: at the last snapshot whose chunks all came before it.
                // Rows and every column of them are then as they were, including
                // those that update records of later chunks changed (withdrawals,
                // reassociations, closed versions), which a filter on the rows'
                // own times cannot hide. Such a snapshot may lag the cutoff by a
                // chunk, never lead it.
                Some(c) => {
                    let public = state.public_snapshot(c, k);
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
                    (
                        scan,
                        by_time,
                        Some(state.public_snapshot(c, state.latest())),
                    )
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
                arrow_meta: self.arrow_meta.clone(),
                hints: Vec::new(),
                partitions: None,
                embargo,
                public_through,
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
        let cat = Arc::new(cat);
        let list = Arc::new(MemoryCatalogProviderList::new());
        list.register_catalog("datafusion".into(), cat.clone());
        let list: Arc<dyn CatalogProviderList> = list;
        // The view is planned over this snapshot's tables as this caller sees them.
        let planning = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(list.clone())
            .build();
        crate::session::obscore::register(cat.as_ref(), &planning, self.links_url.as_deref())
            .await?;
        self.pinned.insert(key, list.clone());
        Ok(list)
    }

    /// A served table at snapshot `k` as every caller sees it, if it is one of the catalog's.
    pub(crate) async fn served_table(
        &self,
        k: u64,
        name: &(String, String),
    ) -> Result<Option<PpdbTable>> {
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

/// A catalog list with the same schemas as `list`, plus `TAP_UPLOAD`.
pub(crate) fn with_uploads(
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
