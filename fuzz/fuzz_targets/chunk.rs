//! Chunk validation: a replica chunk with its `chunk.json` or one of its
//! Parquet files (tables and `updates`) replaced by the input, read and checked
//! (`chunk::load`), then ingested into a catalog that holds the chunk before it.
//!
//! Input: the first byte picks what is replaced (even: `chunk.json`; odd: the
//! file the second byte picks, whose row count in `chunk.json` is set from its
//! footer when it has one, so the checks reach its columns and rows).
//!
//! Besides panics that escape (the decoders' panics `chunk::load` catches and
//! refuses are not failures), it fails when a refusal names no file, or when a
//! refused chunk changed the catalog.

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use catalog::chunk::{self, LoadedChunk};
use catalog::store::{self, Location};
use catalog::{Catalog, CatalogSchema};
use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};

struct Fixture {
    rt: tokio::runtime::Runtime,
    schema: Arc<CatalogSchema>,
    /// The chunk before the one fuzzed, loaded.
    base: LoadedChunk,
    /// The fuzzed chunk's files, by path (`chunk.json` among them).
    files: BTreeMap<String, Vec<u8>>,
}

const CATALOG: &str = "memory://fuzz-chunk-catalog";

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let cfg = catalog::sample::SampleConfig {
        objects: 60,
        nights: 2,
        visits_per_night: Some(4),
        visits_per_chunk: 2,
        src: false,
        ..Default::default()
    };
    catalog::sample::generate(&cfg, dir.path()).expect("sample chunks");
    let mut chunks: Vec<_> = std::fs::read_dir(dir.path())
        .expect("chunks written")
        .map(|e| e.expect("a chunk folder").path())
        .collect();
    chunks.sort();
    let read = |p: &std::path::Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(p)
            .expect("chunk files")
            .map(|e| {
                let e = e.expect("a chunk file");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("readable"),
                )
            })
            .collect()
    };
    // The first chunk with update records after the first, so updates are fuzzed too.
    let target = chunks[1..]
        .iter()
        .find(|c| c.join("updates.parquet").exists())
        .unwrap_or(&chunks[1]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let schema = CatalogSchema::builtin();
    let base_loc = store::open_existing_local(&chunks[0]).expect("the first chunk");
    let base = rt
        .block_on(chunk::load(&base_loc, &schema))
        .expect("the first chunk loads");
    Fixture {
        files: read(target),
        rt,
        schema,
        base,
    }
});

fn rows_in_footer(bytes: &[u8]) -> Option<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(Bytes::copy_from_slice(bytes)).ok()?;
    u64::try_from(reader.metadata().file_metadata().num_rows()).ok()
}

/// The fuzzed chunk's files: the fixture's, with one replaced by `data`.
fn files(f: &Fixture, data: &[u8]) -> Option<BTreeMap<String, Vec<u8>>> {
    let (&mode, rest) = data.split_first()?;
    let mut files = f.files.clone();
    if mode % 2 == 0 {
        files.insert(chunk::MANIFEST.into(), rest.to_vec());
        return Some(files);
    }
    let (&pick, body) = rest.split_first()?;
    let names: Vec<String> = files
        .keys()
        .filter(|n| n.ends_with(".parquet"))
        .cloned()
        .collect();
    let name = names[usize::from(pick) % names.len()].clone();
    if let Some(rows) = rows_in_footer(body) {
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&files[chunk::MANIFEST]).ok()?;
        for file in manifest["files"].as_array_mut()? {
            if file["path"] == name.as_str() {
                file["rows"] = rows.into();
            }
        }
        files.insert(chunk::MANIFEST.into(), serde_json::to_vec(&manifest).ok()?);
    }
    files.insert(name, body.to_vec());
    Some(files)
}

fn assert_names_a_file(e: &catalog::Error) {
    match e.location() {
        Some(at) => assert!(at.file.is_some(), "a refusal without its file: {e}"),
        None => panic!("not a chunk refusal: {e}"),
    }
}

/// Fails the input on a panic that reaches the target, but not on one the
/// code under test catches: `chunk::load` catches the Parquet and Arrow
/// decoders' panics on purpose (a refused chunk), and libfuzzer-sys's own hook
/// would abort the process on those before they are caught.
fn abort_only_on_uncaught_panics() {
    std::panic::set_hook(Box::new(|info| eprintln!("panic (caught or not): {info}")));
}

fuzz_target!(init: abort_only_on_uncaught_panics(), |data: &[u8]| {
    let run = std::panic::AssertUnwindSafe(|| check(data));
    if std::panic::catch_unwind(run).is_err() {
        std::process::abort();
    }
});

fn check(data: &[u8]) {
    let f = &*FIXTURE;
    let Some(files) = files(f, data) else {
        return;
    };
    f.rt.block_on(async {
        let loc = Location {
            store: Arc::new(InMemory::new()),
            prefix: Default::default(),
            url: "memory://fuzz-chunk".into(),
        };
        for (name, bytes) in files {
            loc.store
                .put(&loc.child(&name), PutPayload::from(bytes))
                .await
                .expect("in-memory put");
        }
        let loaded = match chunk::load(&loc, &f.schema).await {
            Ok(c) => c,
            Err(e) => return assert_names_a_file(&e),
        };
        let cat = Catalog::open_or_create(CATALOG, 5).await.expect("a catalog");
        cat.ingest_loaded(&f.base).await.expect("the first chunk commits");
        if let Err(e) = cat.ingest_loaded(&loaded).await {
            assert_names_a_file(&e);
            let latest = cat.state().await.expect("the log reads").latest();
            assert_eq!(latest, 1, "a refused chunk changed the catalog");
        }
        store::forget_memory(CATALOG);
    });
}
