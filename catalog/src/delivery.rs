//! A delivery of chunks on local disk: the chunk folders found under the
//! paths given, in the order they must be committed (docs/chunks.md §2):
//! by `chunk_id` within each format, the formats interleaved by time.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::chunk::{self, Manifest};
use crate::error::{Error, Result};
use crate::store;

/// The chunk folders under `paths` (each a chunk folder, or a folder of
/// them) with their manifests, in commit order.
pub async fn in_order(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut dirs = Vec::new();
    for p in paths {
        if p.join(chunk::MANIFEST).is_file() {
            dirs.push(p.clone());
        } else if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| Error::Io {
                    path: p.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| d.is_dir())
                .collect();
            inner.sort();
            if inner.is_empty() {
                return Err(Error::NoChunks {
                    path: p.display().to_string(),
                    why: "holds no chunk.json and no chunk folders",
                });
            }
            dirs.extend(inner);
        } else {
            return Err(Error::NoChunks {
                path: p.display().to_string(),
                why: "is not a chunk folder or a folder of chunk folders",
            });
        }
    }
    let mut by_format: BTreeMap<String, Vec<(PathBuf, Manifest)>> = BTreeMap::new();
    for d in dirs {
        let loc = store::open_existing_local(Path::new(&d))?;
        let m = chunk::read_manifest(&loc).await?;
        by_format.entry(m.format.clone()).or_default().push((d, m));
    }
    let mut queues: Vec<VecDeque<(PathBuf, Manifest)>> = by_format
        .into_values()
        .map(|mut v| {
            v.sort_by_key(|(_, m)| m.chunk_id);
            v.into()
        })
        .collect();
    let mut ordered = Vec::new();
    while let Some(q) = queues
        .iter_mut()
        .filter(|q| !q.is_empty())
        .min_by(|a, b| a[0].1.last_update_time.cmp(&b[0].1.last_update_time))
    {
        ordered.extend(q.pop_front());
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{SampleConfig, generate};

    #[tokio::test]
    async fn chunks_come_in_chunk_id_order_per_format_interleaved_by_time() {
        let dir = tempfile::TempDir::new().unwrap();
        let cfg = SampleConfig {
            objects: 200,
            nights: 2,
            ..Default::default()
        };
        let summary = generate(&cfg, dir.path()).unwrap();
        let ordered = in_order(&[dir.path().to_path_buf()]).await.unwrap();
        assert_eq!(ordered.len(), summary.chunks);
        let formats: std::collections::BTreeSet<&str> =
            ordered.iter().map(|(_, m)| m.format.as_str()).collect();
        assert!(formats.len() > 1, "replica and src chunks: {formats:?}");
        for f in formats {
            let ids: Vec<i64> = ordered
                .iter()
                .filter(|(_, m)| m.format == f)
                .map(|(_, m)| m.chunk_id)
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{f}: {ids:?}");
        }
    }

    #[tokio::test]
    async fn a_path_without_chunks_says_what_it_is() {
        let dir = tempfile::TempDir::new().unwrap();
        let empty = in_order(&[dir.path().to_path_buf()]).await.unwrap_err();
        assert!(
            empty
                .to_string()
                .contains("holds no chunk.json and no chunk folders"),
            "{empty}"
        );
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "x").unwrap();
        let not = in_order(&[file]).await.unwrap_err();
        assert!(
            not.to_string()
                .contains("is not a chunk folder or a folder of chunk folders"),
            "{not}"
        );
    }
}
