//! Where queries spill, and how much disk they may fill together.
//!
//! Sorts and joins past their memory write temporary files. Unbounded, eight
//! anonymous cross joins wrote 35 GB in a minute and would have filled the
//! disk; so the files of all of an engine's queries share one budget, past
//! which a query fails with a clear error. They live in a folder named for
//! the process and the engine (`<tmp>/ppdb-spill/<pid>-<n>`), removed when
//! the engine is dropped; a process that is killed cannot delete its files,
//! so the next one to start removes the folders of processes that are gone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};

/// Engines this process has opened, to name their folders apart.
static ENGINES: AtomicU64 = AtomicU64::new(0);

/// An engine's spill folder, removed when the engine lets go of it.
#[derive(Debug)]
pub(crate) struct SpillFolder(Option<PathBuf>);

impl Drop for SpillFolder {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The disk manager for one engine: files under `root` (the system's
/// temporary folder by default), at most `budget` bytes at once; and the
/// folder, which goes with the engine.
pub(crate) fn disk_manager(root: Option<&Path>, budget: u64) -> (DiskManagerBuilder, SpillFolder) {
    let root = root
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
        .join("ppdb-spill");
    remove_orphans(&root);
    let n = ENGINES.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("{}-{n}", std::process::id()));
    // A folder another user made cannot take ours: then the files go where
    // the system puts temporary files, and a killed process leaves them.
    let (mode, folder) = match std::fs::create_dir_all(&dir) {
        Ok(()) => (DiskManagerMode::Directories(vec![dir.clone()]), Some(dir)),
        Err(_) => (DiskManagerMode::OsTmpDirectory, None),
    };
    let builder = DiskManagerBuilder::default()
        .with_mode(mode)
        .with_max_temp_directory_size(budget);
    (builder, SpillFolder(folder))
}

/// Removes the spill folders of processes that no longer run (where the
/// system says which run; elsewhere nothing is removed).
fn remove_orphans(root: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // `<pid>-<engine>`, or `<pid>` as earlier versions named them.
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next()?.parse::<u32>().ok());
        let Some(pid) = pid else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            // Another process may be sweeping too: whoever loses finds nothing.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folders_of_dead_processes_go_and_live_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let spill = root.path().join("ppdb-spill");
        // No process has this pid (Linux caps pids at 2^22).
        let dead = spill.join("4294967");
        let live = spill.join("1");
        for d in [&dead, &live] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
        }
        let (builder, folder) = disk_manager(Some(root.path()), 1 << 20);
        let manager = builder.build().unwrap();
        assert!(!dead.exists(), "a dead process's files are removed");
        assert!(live.exists(), "a running process's files stay");
        assert_eq!(manager.max_temp_directory_size(), 1 << 20);
        let ours = spill.join(format!("{}-", std::process::id()));
        let mine = |d: &std::fs::DirEntry| {
            d.path()
                .to_string_lossy()
                .starts_with(&*ours.to_string_lossy())
        };
        let count = || {
            std::fs::read_dir(&spill)
                .unwrap()
                .flatten()
                .filter(|d| mine(d))
                .count()
        };
        assert_eq!(count(), 1, "the engine's own folder");
        drop(folder);
        assert_eq!(count(), 0, "gone with the engine");
    }
}
