//! Log checkpoints: the whole log state saved every [`CHECKPOINT_EVERY`]
//! entries, so that opening a catalog reads the newest one and the entries
//! after it rather than every entry since the catalog was made.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::{LogState, create_json};
use crate::error::Result;
use crate::store::Location;

/// The folder of log checkpoints under the catalog root (outside `_log`, whose
/// listing must name entries only).
pub const CHECKPOINT_DIR: &str = "_checkpoints";
/// The writer of every this many-th log entry also writes a checkpoint.
pub const CHECKPOINT_EVERY: u64 = 100;
/// The format tag of a checkpoint.
const CHECKPOINT_FORMAT: &str = "ppdb-checkpoint/1";

/// A log state saved whole, so that opening a catalog reads it and the entries
/// after it rather than every entry since the catalog was made.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format: String,
    state: LogState,
}

/// The relative path of the checkpoint of log version `version`.
pub fn checkpoint_path(version: u64) -> String {
    format!("{CHECKPOINT_DIR}/{version:020}.json")
}

/// Saves `state` as the checkpoint of its version (a second writer of the same
/// version would save the same state, so the first one stays).
pub async fn write_checkpoint(loc: &Location, state: &LogState) -> Result<()> {
    #[derive(Serialize)]
    struct Written<'a> {
        format: &'a str,
        state: &'a LogState,
    }
    let written = Written {
        format: CHECKPOINT_FORMAT,
        state,
    };
    create_json(loc, &checkpoint_path(state.version), &written).await?;
    Ok(())
}

/// The newest checkpoint that reads back whole, if any: one that does not (cut
/// short, of another format) is passed over for the one before it, and with
/// none the log is read from its first entry.
pub async fn latest_checkpoint(loc: &Location) -> Option<LogState> {
    let mut versions: Vec<u64> = loc
        .store
        .list(Some(&loc.child(CHECKPOINT_DIR)))
        .try_filter_map(|meta| async move {
            Ok(meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|v| v.parse::<u64>().ok()))
        })
        .try_collect()
        .await
        .ok()?;
    versions.sort_unstable();
    for v in versions.into_iter().rev() {
        let Ok(got) = loc.store.get(&loc.child(&checkpoint_path(v))).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(c) if c.format == CHECKPOINT_FORMAT && c.state.version == v => return Some(c.state),
            _ => continue,
        }
    }
    None
}
