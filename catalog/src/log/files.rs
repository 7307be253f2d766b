//! What the log records of each data file: its cell, rows, snapshot and
//! retirement ranges, column statistics, and which part of its cell's rows
//! compaction put in it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::healpix::Cell;
use crate::schema::TableId;

/// Ranges of selected columns over the rows of one file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileStats {
    /// Smallest and largest `_healpix_29` of the rows (positioned tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healpix_29: Option<(i64, i64)>,
    /// Partition-order cells other than the file's own that hold some of its
    /// rows' positions (a source near a border whose object sits next door).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spill_cells: Vec<u64>,
    /// For a file of a cell a commit merged up from finer ones (sparse sky):
    /// the cells at the ingest order that hold its rows, by their object's
    /// partition or by their own position. Readers prune the file by these, as
    /// they would the finer files it stands for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_cells: Vec<u64>,
    /// Ranges of integer id columns (ids, visits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ints: BTreeMap<String, (i64, i64)>,
    /// Ranges of time columns (MJD TAI).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub times: BTreeMap<String, (f64, f64)>,
    /// Rows whose DiaObject version is open (`validityEndMjdTai` NULL), for a
    /// table with versions: a file with none holds no row of the current view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_versions: Option<u64>,
}

/// One data file as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the catalog root.
    pub path: String,
    /// The table its rows belong to.
    pub table: TableId,
    /// The partition, for partitioned tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<Cell>,
    /// Physical rows in the file (visible or not).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Smallest `_added` in the file.
    pub added_min: u64,
    /// Largest `_added` in the file.
    pub added_max: u64,
    /// Smallest `_retired` in the file (set by compaction), if any row has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_min: Option<u64>,
    /// The retention horizon compaction applied when it wrote the file: rows no
    /// retained snapshot could see were left out (see [`Action::Expire`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_below: Option<u64>,
    /// How many snapshots below that horizon retention kept then: the kept
    /// set only shrinks at one horizon, so a smaller one means rows only the
    /// released snapshots saw may be left out now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_keeping: Option<u64>,
    /// Largest `_retired`, when compaction retired every row of the file: no
    /// snapshot from this one on sees any of its rows (a file of history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_max: Option<u64>,
    /// For a file compaction wrote: the snapshot through which it moved retired
    /// rows and closed versions out of the current file into the history file,
    /// so which rows lie in which file depends on commits up to this snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded_through: Option<u64>,
    /// Column ranges for pruning without opening the file.
    pub stats: FileStats,
}

/// Which of a cell's rows a file holds, as compaction lays a cell out: a
/// query of the latest snapshot reads only the current part, and a query of
/// its current DiaObject versions only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// Rows visible at the snapshot compaction settled, and, for a table with
    /// versions, open then (and rows of files ingest wrote).
    Current,
    /// Closed DiaObject versions still visible when compaction settled.
    Closed,
    /// Rows retired by then (`FileEntry::retired_max`).
    Retired,
}

impl FileEntry {
    /// Which part of its cell's rows the file holds.
    pub fn part(&self) -> Part {
        if self.retired_max.is_some() {
            Part::Retired
        } else if self.stats.open_versions == Some(0) {
            Part::Closed
        } else {
            Part::Current
        }
    }
}

/// Rows of a file retired by a commit, by their 0-based position in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retirement {
    /// Path relative to the catalog root.
    pub path: String,
    /// Positions of the retired rows, ascending.
    pub rows: Vec<u32>,
}
