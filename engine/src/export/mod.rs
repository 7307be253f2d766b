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

/// Writes each of `tables` (`DEFAULT_TABLES` when empty) at one snapshot as a
/// HATS catalog in a folder of its own name under `out`, with its margin
/// catalog beside it (`NAME_5arcs` for the default 5″).
pub async fn hats(
    engine: &Engine,
    tables: &[String],
    out: &Location,
    options: &HatsOptions,
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
        done.push(hats::write(engine, table, c, out, &query, options).await?);
    }
    Ok(done)
}
