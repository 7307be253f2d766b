//! ADQL text through the engine's parse, checks, rewrite, pinning and planning
//! (nothing runs), on the bundled sample catalog.
//!
//! Besides panics, hangs and crashes, it fails when a refusal has no position.

#![no_main]

use std::sync::LazyLock;

use engine::{Engine, EngineOptions, Error, QueryOptions};
use libfuzzer_sys::fuzz_target;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");

static ENGINE: LazyLock<(tokio::runtime::Runtime, Engine)> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let engine = rt
        .block_on(Engine::open_with(
            SAMPLE,
            EngineOptions {
                state: Some("memory://fuzz-state".into()),
                ..Default::default()
            },
        ))
        .expect("the bundled sample opens");
    (rt, engine)
});

fuzz_target!(|data: &[u8]| {
    // Every input is a query: bytes that are not UTF-8 become U+FFFD, so no
    // execution is skipped.
    let text = String::from_utf8_lossy(data);
    let (rt, engine) = &*ENGINE;
    match rt.block_on(engine.explain(&text, &QueryOptions::default())) {
        Ok(_) => {}
        Err(Error::Adql(e)) => assert!(
            e.line > 0 && e.column > 0,
            "refusal without a position: {e}"
        ),
        // Snapshot errors (time travel to a time before the first) and the like.
        Err(_) => {}
    }
});
