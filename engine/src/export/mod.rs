//! A snapshot written out for other tools: HATS catalogs (the IVOA HATS
//! Note's layout) that LSDB, `hats`, DuckDB and pandas open.
//!
//! Each table is read by two ADQL queries the engine writes and runs like
//! any other, pinned at one snapshot (the embargo applied as the options
//! say): the rows per HEALPix cell, from which the partitions are chosen
//! ([`partition::plan`]), then every row with its `_healpix_29`, sorted by
//! it, so each partition's rows arrive together and are written as they
//! come. The second query's token is in the catalog's properties: replayed,
//! it gives the rows the files hold.

mod hats;
mod margin;
pub mod partition;
mod properties;

use catalog::store::Location;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::{Engine, QueryOptions};

pub use hats::{Exported, HatsOptions};
pub use margin::MAX_ARCSEC as MAX_MARGIN_ARCSEC;

/// The tables exported when none is named: the objects and their light curves.
pub const DEFAULT_TABLES: [&str; 3] = ["DiaObject", "DiaSource", "DiaForcedSource"];

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The table does not exist or cannot be placed on the sky.
    #[error("{table}: {why}")]
    Table {
        /// The table named.
        table: String,
        /// What is wrong with it.
        why: String,
    },
    /// The destination already holds files.
    #[error("{dir} is not empty: export into a new directory (an export never overwrites files)")]
    NotEmpty {
        /// The folder that has files.
        dir: String,
    },
    /// The rows did not fall into the partitions their counts chose; the
    /// catalog is not valid and its properties were not written.
    #[error("{table}: {why}; the export is incomplete")]
    Inconsistent {
        /// The table being written.
        table: String,
        /// What disagreed.
        why: String,
    },
}

/// Where a catalog is written until it is whole, then moved to its folder:
/// outside every catalog's folder, so that neither a reader globbing
/// `DIR/TABLE/dataset/**` nor `hats` ever sees part of an export.
pub const STAGING: &str = ".ppdb-incomplete";

/// Writes each of `tables` (`DEFAULT_TABLES` when empty) at one snapshot as a
/// HATS catalog in a folder of its own name under `out`, with its margin
/// catalog beside it (`NAME_5arcs` for the default 5″); `finished` is told
/// of each table as its catalogs are in place.
pub async fn hats(
    engine: &Engine,
    tables: &[String],
    out: &Location,
    options: &HatsOptions,
    mut finished: impl FnMut(&Exported),
) -> crate::Result<Vec<Exported>> {
    let names: Vec<String> = if tables.is_empty() {
        DEFAULT_TABLES.iter().map(|t| t.to_string()).collect()
    } else {
        tables.to_vec()
    };
    let mut found = Vec::with_capacity(names.len());
    for name in &names {
        let table = crate::coverage::placed_table(name, engine.tables()).map_err(|e| {
            ExportError::Table {
                table: name.chars().take(100).collect(),
                why: e,
            }
        })?;
        if found.iter().any(|t: &adql::Table| t.name == table.name) {
            continue;
        }
        // Refused before anything is written: an export never mixes with files
        // already there.
        let margin = hats::margin_name(&table.name, options.margin_arcsec);
        for name in [&table.name, &margin] {
            let dir = out.child(name);
            let mut listed = out.store.list(Some(&dir));
            if listed
                .try_next()
                .await
                .map_err(catalog::Error::from)?
                .is_some()
            {
                return Err(ExportError::NotEmpty {
                    dir: format!("{}/{name}", out.url.trim_end_matches('/')),
                }
                .into());
            }
        }
        found.push(table.clone());
    }
    // Every table counted (and an empty one refused) before any file is
    // written, all at the snapshot the first was read at.
    let mut query: QueryOptions = options.query.clone();
    let mut counted = Vec::with_capacity(found.len());
    for table in &found {
        let c = hats::count(engine, table, &query, options.max_rows).await?;
        query.as_of = Some(adql::AsOf::Snapshot(c.snapshot));
        counted.push(c);
    }
    let mut done = Vec::with_capacity(found.len());
    for (table, c) in found.iter().zip(counted) {
        let folders = [
            table.name.clone(),
            hats::margin_name(&table.name, options.margin_arcsec),
        ];
        // What an interrupted export of these catalogs left is ours to clear.
        for f in &folders {
            discard(out, f).await;
        }
        let exported = match hats::write(engine, table, c, out, &query, options).await {
            Ok(e) => e,
            Err(e) => {
                for f in &folders {
                    discard(out, f).await;
                }
                return Err(e);
            }
        };
        for f in &folders {
            publish(out, f).await?;
        }
        finished(&exported);
        done.push(exported);
    }
    Ok(done)
}

/// The folder a catalog is written in until it is whole.
pub(crate) fn staged(name: &str) -> String {
    format!("{STAGING}/{name}")
}

/// Moves a staged catalog to its folder (nothing if none was staged).
async fn publish(out: &Location, name: &str) -> crate::Result<()> {
    let from = out.child(&staged(name));
    let prefix = format!("{}/", from.as_ref());
    let mut objects: Vec<_> = out
        .store
        .list(Some(&from))
        .try_collect()
        .await
        .map_err(catalog::Error::from)?;
    // The properties last, as when they were written: a folder without them
    // is no catalog yet.
    objects.sort_by_key(|o| {
        o.location
            .filename()
            .is_some_and(|f| f.ends_with("properties"))
    });
    for o in objects {
        let Some(rel) = o.location.as_ref().strip_prefix(&prefix) else {
            continue;
        };
        let to = out.child(&format!("{name}/{rel}"));
        out.store
            .rename(&o.location, &to)
            .await
            .map_err(catalog::Error::from)?;
    }
    Ok(())
}

/// Deletes what is staged for a catalog, as far as it can.
async fn discard(out: &Location, name: &str) {
    let from = out.child(&staged(name));
    let listed: Result<Vec<_>, _> = out.store.list(Some(&from)).try_collect().await;
    for o in listed.unwrap_or_default() {
        let _ = out.store.delete(&o.location).await;
    }
}
