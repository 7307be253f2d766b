//! A local folder whose small reads happen on the calling thread.
//!
//! `object_store`'s `LocalFileSystem` hands every operation, however small, to
//! tokio's blocking pool, and a whole-file get comes back as a file that is
//! read there again. A light curve or a small cone reads a few column pages
//! from each of a few files, plus the log probe and the token record: about
//! ten such hand-offs, each waking a blocking thread and then the worker
//! (two or more context switches; ~26 µs on an idle 2-core machine, more
//! under load), which made thread switching the largest single cost of such
//! a query served from a local catalog. Reads of at most [`INLINE_MAX`]
//! bytes (a page cache copy of well under a millisecond) are done here on
//! the worker instead; a larger get returns the opened file as
//! `LocalFileSystem` does (read on the blocking pool), larger range reads,
//! writes, listings and deletes go to `LocalFileSystem` unchanged, and what a
//! read returns (metadata, ETag, errors) is what `LocalFileSystem` returns.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// The most bytes one read does on the calling thread.
pub const INLINE_MAX: u64 = 2 << 20;

/// `LocalFileSystem`, with its small reads done in place.
#[derive(Debug)]
pub struct InlineLocal {
    inner: LocalFileSystem,
}

impl InlineLocal {
    /// Wraps a local store.
    pub fn new(inner: LocalFileSystem) -> Self {
        Self { inner }
    }

    fn open(&self, location: &Path) -> Result<(File, Metadata, PathBuf)> {
        let path = self.inner.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| open_error(e, &path))?;
        let meta = file.metadata().map_err(|e| open_error(e, &path))?;
        if meta.is_dir() {
            return Err(open_error(
                std::io::Error::new(ErrorKind::NotFound, "is directory"),
                &path,
            ));
        }
        Ok((file, meta, path))
    }
}

impl fmt::Display for InlineLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InlineLocal {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (file, metadata, path) = self.open(location)?;
        let meta = object_meta(&metadata, location.clone());
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(|e| generic(e.into()))?,
            None => 0..meta.size,
        };
        let payload = if !options.head && range.end - range.start > INLINE_MAX {
            // The file, as LocalFileSystem gives it: read on the blocking pool.
            GetResultPayload::File(file, path)
        } else {
            let bytes = if options.head {
                Bytes::new()
            } else {
                read(&file, &path, range.clone())?
            };
            GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed())
        };
        Ok(GetResult {
            payload,
            attributes: Default::default(),
            range,
            meta,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        if total > INLINE_MAX {
            return self.inner.get_ranges(location, ranges).await;
        }
        let path = self.inner.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| open_error(e, &path))?;
        ranges
            .iter()
            .map(|r| read(&file, &path, r.clone()))
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Reads `range` of `file` whole, or fails as `LocalFileSystem` does when it
/// ends early.
fn read(file: &File, path: &FsPath, range: Range<u64>) -> Result<Bytes> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], range.start + done as u64) {
            Ok(0) => {
                return Err(generic(
                    format!(
                        "{}: wanted bytes {}..{}, the file ends at {}",
                        path.display(),
                        range.start,
                        range.end,
                        range.start + done as u64
                    )
                    .into(),
                ));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(generic(Box::new(e))),
        }
    }
    Ok(buf.into())
}

/// The metadata `LocalFileSystem` gives, ETag included (the inode, the
/// modification time in µs and the size, in hex), so that a condition made
/// from one store's answer holds on the other.
fn object_meta(metadata: &Metadata, location: Path) -> ObjectMeta {
    use std::os::unix::fs::MetadataExt;
    let modified = metadata.modified().ok();
    let micros = modified
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    ObjectMeta {
        location,
        last_modified: modified.map(DateTime::<Utc>::from).unwrap_or_else(Utc::now),
        size: metadata.len(),
        e_tag: Some(format!(
            "{:x}-{micros:x}-{:x}",
            metadata.ino(),
            metadata.len()
        )),
        version: None,
    }
}

fn open_error(source: std::io::Error, path: &FsPath) -> Error {
    match source.kind() {
        ErrorKind::NotFound => Error::NotFound {
            path: path.display().to_string(),
            source: Box::new(source),
        },
        _ => generic(format!("unable to open {}: {source}", path.display()).into()),
    }
}

fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Error::Generic {
        store: "LocalFileSystem",
        source,
    }
}

#[cfg(test)]
// `get_ranges` takes a list of ranges: one range is a list of one.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use object_store::{GetRange, ObjectStoreExt, PutMode};

    fn stores() -> (tempfile::TempDir, LocalFileSystem, InlineLocal) {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let b = InlineLocal::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        (dir, a, b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_answer_as_the_local_store_does() {
        let (_dir, local, inline) = stores();
        let p = Path::from("a/b.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        local.put(&p, data.clone().into()).await.unwrap();

        let ours = inline.get(&p).await.unwrap();
        let theirs = local.get(&p).await.unwrap();
        assert_eq!(ours.meta, theirs.meta, "same metadata and ETag");
        assert_eq!(ours.bytes().await.unwrap(), theirs.bytes().await.unwrap());

        let ranges = [3..17, 9_000..10_000, 0..0];
        assert_eq!(
            inline.get_ranges(&p, &ranges).await.unwrap(),
            local.get_ranges(&p, &ranges).await.unwrap()
        );
        let suffix = GetOptions {
            range: Some(GetRange::Suffix(100)),
            ..Default::default()
        };
        let ours = inline.get_opts(&p, suffix.clone()).await.unwrap();
        assert_eq!(ours.range, 9_900..10_000);
        assert_eq!(ours.bytes().await.unwrap(), &data[9_900..]);
        assert_eq!(
            inline.head(&p).await.unwrap(),
            local.head(&p).await.unwrap()
        );

        // A condition taken from one store's answer holds on the other.
        let etag = local.head(&p).await.unwrap().e_tag;
        let stale = GetOptions {
            if_none_match: etag,
            ..Default::default()
        };
        assert!(matches!(
            inline.get_opts(&p, stale).await,
            Err(Error::NotModified { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_files_and_short_reads_fail_as_the_local_store_does() {
        let (_dir, local, inline) = stores();
        let p = Path::from("gone.json");
        assert!(matches!(inline.get(&p).await, Err(Error::NotFound { .. })));
        assert!(matches!(inline.head(&p).await, Err(Error::NotFound { .. })));
        assert!(matches!(
            inline.get_ranges(&p, &[0..4]).await,
            Err(Error::NotFound { .. })
        ));
        local.put(&p, vec![1u8; 10].into()).await.unwrap();
        let e = inline
            .get_ranges(&p, &[5..20])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("ends at 10"), "{e}");
        assert!(local.get_ranges(&p, &[5..20]).await.is_err());
        // Writes still go through the local store, conditions included.
        let again = inline
            .put_opts(&p, vec![2u8].into(), PutMode::Create.into())
            .await;
        assert!(matches!(again, Err(Error::AlreadyExists { .. })));
    }

    #[test]
    fn small_reads_do_not_wait_for_the_blocking_pool() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (_dir, local, inline) = stores();
            let p = Path::from("a.bin");
            local.put(&p, vec![3u8; 100].into()).await.unwrap();
            // The pool's one thread is busy until told otherwise.
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let soon = std::time::Duration::from_secs(1);
            let read = tokio::time::timeout(soon, inline.get_ranges(&p, &[10..20])).await;
            assert_eq!(read.unwrap().unwrap()[0].len(), 10);
            let whole = tokio::time::timeout(soon, async { inline.get(&p).await?.bytes().await });
            assert_eq!(whole.await.unwrap().unwrap().len(), 100);
            let theirs = tokio::time::timeout(soon, local.get_ranges(&p, &[10..20])).await;
            assert!(theirs.is_err(), "LocalFileSystem waits for the pool");
            go.send(()).unwrap();
            busy.await.unwrap().unwrap();
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_reads_go_to_the_local_store() {
        let (_dir, local, inline) = stores();
        let p = Path::from("big.bin");
        let data = vec![7u8; (INLINE_MAX + 10) as usize];
        local.put(&p, data.clone().into()).await.unwrap();
        let got = inline.get(&p).await.unwrap();
        assert!(matches!(got.payload, GetResultPayload::File(..)));
        assert_eq!(got.bytes().await.unwrap().len(), data.len());
        let whole = [0..INLINE_MAX + 10];
        assert_eq!(
            inline.get_ranges(&p, &whole).await.unwrap()[0].len(),
            data.len()
        );
    }
}
