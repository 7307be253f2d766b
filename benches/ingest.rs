//! Ingest throughput: generate one night of replica chunks, commit them to a
//! fresh catalog on local disk, report rows per second.
//!
//! `cargo run --profile bench-fast -p benches --bin ingest-bench -- --objects 600000 --visits 180`

use std::path::PathBuf;
use std::time::Instant;

#[path = "chunks.rs"]
mod chunks;

use anyhow::Result;
use catalog::Catalog;
use catalog::sample::{SampleConfig, generate};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Distinct DiaObjects in the patch.
    #[arg(long, default_value_t = 600_000)]
    objects: usize,
    /// Visits in the night.
    #[arg(long, default_value_t = 180)]
    visits: usize,
    /// Visits per chunk.
    #[arg(long, default_value_t = 10)]
    visits_per_chunk: usize,
    /// Where to write chunks and catalog (default: a temporary folder).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Reuse the chunks already under `--work` instead of generating them
    /// (the catalog is always made afresh).
    #[arg(long, requires = "work")]
    reuse_chunks: bool,
    /// Skip the reference (decode + re-encode) run, e.g. when profiling ingest alone.
    #[arg(long)]
    no_reference: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::TempDir::new()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let chunks = work.join("chunks");
    let cfg = SampleConfig {
        objects: args.objects,
        nights: 1,
        visits_per_night: Some(args.visits),
        visits_per_chunk: args.visits_per_chunk,
        src: false,
        ..Default::default()
    };
    let dia_sources = if args.reuse_chunks {
        None
    } else {
        let t = Instant::now();
        let summary = generate(&cfg, &chunks)?;
        eprintln!(
            "generated {} chunks in {:.1} s: {:?}",
            summary.chunks,
            t.elapsed().as_secs_f64(),
            summary.rows
        );
        summary.rows.get("DiaSource").copied()
    };
    let catalog_dir = work.join("catalog");
    if catalog_dir.exists() {
        std::fs::remove_dir_all(&catalog_dir)?;
    }
    let cat = Catalog::open_or_create(catalog_dir.to_str().unwrap_or("catalog"), 6).await?;
    let t = Instant::now();
    let (committed, rows) = chunks::ingest_all(&cat, &chunks).await?;
    let secs = t.elapsed().as_secs_f64();
    let dirs = chunks::chunk_dirs(&chunks)?;
    let dia_sources = dia_sources.unwrap_or(
        cat.snapshots()
            .await?
            .iter()
            .filter_map(|s| s.rows_added.get(&catalog::TableId::DiaSource))
            .sum(),
    );
    if args.no_reference {
        report(committed, rows, dia_sources, secs);
        return Ok(());
    }
    // Reference in the same run: decode and re-encode the same files with
    // Parquet defaults, no checks, partitioning or history: the floor.
    let t = Instant::now();
    let mut copied = 0u64;
    for d in &dirs {
        for e in std::fs::read_dir(d)? {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "parquet") {
                let file = std::fs::File::open(&path)?;
                let builder =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
                let mut w = parquet::arrow::ArrowWriter::try_new(
                    Vec::new(),
                    builder.schema().clone(),
                    None,
                )?;
                for batch in builder.build()? {
                    let batch = batch?;
                    copied += batch.num_rows() as u64;
                    w.write(&batch)?;
                }
                w.close()?;
            }
        }
    }
    let copy_secs = t.elapsed().as_secs_f64();
    println!(
        "reference: Parquet decode + re-encode of the same files: {copied} rows in {copy_secs:.2} s = {:.0} rows/s",
        copied as f64 / copy_secs
    );
    report(committed, rows, dia_sources, secs);
    Ok(())
}

fn report(committed: usize, rows: u64, dia_sources: u64, secs: f64) {
    println!(
        "ingest: {committed} chunks, {rows} rows ({dia_sources} DiaSources) in {secs:.2} s = {:.0} rows/s ({:.0} DiaSources/s)",
        rows as f64 / secs,
        dia_sources as f64 / secs
    );
}
