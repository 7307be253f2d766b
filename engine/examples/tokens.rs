//! Embedding the engine: run ADQL, keep the token, replay it later.
//!
//! ```text
//! cargo run -p engine --example tokens -- [CATALOG_URL] [ADQL]
//! ```
//!
//! Without arguments it queries the bundled sample catalog and keeps its
//! tokens in memory, so nothing is written anywhere.

use engine::{Engine, EngineOptions, QueryOptions, ReplayOptions};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| SAMPLE.to_string());
    let adql = args.next().unwrap_or_else(|| {
        "SELECT TOP 5 diaObjectId, ra, dec, nDiaSources FROM ppdb.DiaObject \
         WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 55.0, -30.0, 0.5)) = 1"
            .to_string()
    });
    let engine = Engine::open_with(
        &url,
        EngineOptions {
            // Any object-store URL works here; a shared one lets other servers replay.
            state: Some("memory://example-state".into()),
            ..Default::default()
        },
    )
    .await?;

    // A query streams record batches; its token is known before the first row.
    let mut result = engine.query(&adql, &QueryOptions::default()).await?;
    let token = result.token.clone().unwrap_or_default();
    println!("token {token}");
    println!("pinned: {}", result.pinned_adql.as_deref().unwrap_or(""));
    let mut batches = Vec::new();
    while let Some(batch) = result.next_batch().await {
        batches.push(batch?);
    }
    // After the last row the record is stored with its row count and checksum.
    let first = result
        .finished()
        .cloned()
        .ok_or("the stream did not finish")?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    println!("rows {}, checksum {:?}", first.rows, first.checksum);

    // Later (in another process, on another server sharing the state store):
    let replay = engine
        .replay(
            &token,
            &ReplayOptions {
                use_cache: false,
                ..Default::default()
            },
        )
        .await?;
    let (_, _) = replay.collect().await?; // a mismatch would be an error here
    let record = engine.record(&token).await?;
    println!(
        "replayed {token}: snapshot {} committed {}, {} rows, checksum {} verified",
        record.snapshot, record.snapshot_time, record.rows, record.checksum
    );
    Ok(())
}
