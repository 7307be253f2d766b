//! Catalog URLs to object stores: local paths, `file://`, `memory://`, `s3://`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

mod inline;

/// An object store and the prefix a catalog (or chunk set) lives under.
#[derive(Clone, Debug)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store.
    pub prefix: Path,
    /// The URL it was opened from, normalised.
    pub url: String,
}

impl Location {
    /// A path below the prefix.
    pub fn child(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }
}

// memory:// stores live for the process, so that two handles on `memory://x`
// see the same catalog (racing writers in one test, for instance).
static MEMORY: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Opens the store a URL names. A bare path is a local folder, created only if `create`.
pub fn open(url: &str, create: bool) -> Result<Location> {
    let bad = |message: &str| Error::Url {
        url: url.to_string(),
        message: message.to_string(),
    };
    if !url.contains("://") {
        return open_local(url, url, create);
    }
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| bad("not a local file path"))?;
            open_local(&path.to_string_lossy(), url, create)
        }
        "memory" => {
            let name = parsed.host_str().unwrap_or("").to_string();
            let store = MEMORY
                .lock()
                .map_err(|_| bad("memory store registry poisoned"))?
                .entry(name)
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone();
            Ok(Location {
                store,
                prefix: Path::from(parsed.path().trim_matches('/')),
                url: url.to_string(),
            })
        }
        "s3" => {
            let bucket = parsed
                .host_str()
                .ok_or_else(|| bad("s3 URL lacks a bucket"))?;
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(&e.to_string()))?;
            Ok(Location {
                store: Arc::new(store),
                prefix: Path::from(parsed.path().trim_matches('/')),
                url: url.to_string(),
            })
        }
        other => Err(bad(&format!(
            "unsupported scheme {other:?} (use a local path, file://, memory:// or s3://)"
        ))),
    }
}

/// Forgets a `memory://` store: a later open of its URL starts empty. (Processes
/// that open many, such as fuzzers, would otherwise keep every one.)
pub fn forget_memory(url: &str) {
    if let Ok(parsed) = Url::parse(url)
        && parsed.scheme() == "memory"
        && let Ok(mut stores) = MEMORY.lock()
    {
        stores.remove(parsed.host_str().unwrap_or(""));
    }
}

fn open_local(path: &str, url: &str, create: bool) -> Result<Location> {
    if create {
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: path.to_string(),
            source,
        })?;
    } else if !std::path::Path::new(path).is_dir() {
        return Err(Error::NotACatalog {
            url: url.to_string(),
        });
    }
    local(std::path::Path::new(path), url)
}

/// Opens a local folder without creating it (for reading chunk sets).
pub fn open_existing_local(path: &std::path::Path) -> Result<Location> {
    local(path, &path.display().to_string())
}

/// The existing folder `path` as a store (`url` names it in errors).
fn local(path: &std::path::Path, url: &str) -> Result<Location> {
    let abs = std::fs::canonicalize(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(&abs).map_err(|e| Error::Url {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    Ok(Location {
        store: Arc::new(inline::InlineLocal::new(store)),
        prefix: Path::default(),
        url: abs.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_share_one_store_per_name() {
        let a = open("memory://share-test/cat", true).unwrap();
        let b = open("memory://share-test/cat", true).unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(a.prefix.as_ref(), "cat");
    }

    #[test]
    fn unknown_scheme_is_refused_clearly() {
        let e = open("ftp://x/y", false).unwrap_err().to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
    }
}
