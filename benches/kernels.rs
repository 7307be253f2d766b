//! Criterion micro-benchmarks of the hot kernels: HEALPix hashing and
//! coverage, the ADQL geometry functions, the result encoders, and the
//! visibility rule of a snapshot. Each group also times a reference in the
//! same run (the floor the kernel could reach), so a figure reads as a ratio.
//!
//! `cargo bench --profile bench-fast -p benches --bench kernels`
//! (add a filter, e.g. `-- geometry`, to run one group).

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use catalog::healpix::{Cell, healpix_29};
use catalog::sample::{SampleConfig, generate};
use catalog::{Catalog, DEFAULT_PARTITION_ORDER, TableId};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::encode::{self, Describe, Format};
use engine::kernels;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "chunks.rs"]
mod chunks;

/// Rows per batch for the per-row kernels: a typical Parquet row group slice.
const ROWS: usize = 100_000;

/// Positions in a 3.5° field, as a visit's sources are.
fn positions(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|_| (rng.random_range(150.0..153.5), rng.random_range(-3.0..0.5)))
        .unzip()
}

fn column(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}

fn constant(v: f64, n: usize) -> ArrayRef {
    Arc::new(Float64Array::from(vec![v; n]))
}

fn healpix(c: &mut Criterion) {
    let (ra, dec) = positions(ROWS);
    let mut g = c.benchmark_group("healpix");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("hash order 29 (per row, ingest and HEALPIX_INDEX)", |b| {
        b.iter(|| {
            let mut acc = 0i64;
            for (r, d) in ra.iter().zip(&dec) {
                acc ^= healpix_29(black_box(*r), black_box(*d));
            }
            acc
        })
    });
    // Reference: the unit vector of each position, the least a cone test needs.
    g.bench_function("reference: unit vector (sin/cos)", |b| {
        b.iter(|| {
            let mut acc = 0.0f64;
            for (r, d) in ra.iter().zip(&dec) {
                let (r, d) = (black_box(*r).to_radians(), black_box(*d).to_radians());
                acc += d.cos() * r.cos() + d.cos() * r.sin() + d.sin();
            }
            acc
        })
    });
    g.finish();

    let mut g = c.benchmark_group("healpix coverage");
    for (name, radius) in [("cone 5′", 5.0 / 60.0), ("cone 1°", 1.0)] {
        for order in [DEFAULT_PARTITION_ORDER, 12] {
            g.bench_with_input(
                BenchmarkId::new(name, format!("order {order}")),
                &(order, radius),
                |b, &(order, radius)| {
                    b.iter(|| Cell::cone(order, black_box(151.2), black_box(-1.3), radius).len())
                },
            );
        }
    }
    g.finish();
}

fn geometry(c: &mut Criterion) {
    use adql::udf as n;
    let (ra, dec) = positions(ROWS);
    let (ra_c, dec_c) = (column(&ra), column(&dec));
    let points = kernels::geometry(n::POINT, &[ra_c.clone(), dec_c.clone()]).expect("POINT");
    // Constants are one-row arrays: the kernel takes them as a query's literals.
    let circle = kernels::geometry(
        n::CIRCLE,
        &[constant(151.7, 1), constant(-1.2, 1), constant(0.5, 1)],
    )
    .expect("CIRCLE");
    let small_circles =
        kernels::geometry(n::CIRCLE, &[ra_c.clone(), dec_c.clone(), constant(0.01, 1)])
            .expect("CIRCLE");
    let square = [150.5, -2.0, 152.5, -2.0, 152.5, 0.0, 150.5, 0.0];
    let polygon = kernels::geometry(
        n::POLYGON,
        &square.iter().map(|v| constant(*v, 1)).collect::<Vec<_>>(),
    )
    .expect("POLYGON");
    let cone_args = [
        ra_c.clone(),
        dec_c.clone(),
        constant(151.7, 1),
        constant(-1.2, 1),
        constant(0.5, 1),
    ];
    let distance_args = [
        ra_c.clone(),
        dec_c.clone(),
        constant(151.7, 1),
        constant(-1.2, 1),
    ];

    let mut g = c.benchmark_group("geometry");
    g.throughput(Throughput::Elements(ROWS as u64));
    let cases: [(&str, &str, &[ArrayRef]); 7] = [
        ("CONTAINS(POINT, CIRCLE) as a cone", n::CONE, &cone_args),
        ("DISTANCE(POINT, POINT)", n::DISTANCE, &distance_args),
        ("POINT(ra, dec)", n::POINT, &[ra_c.clone(), dec_c.clone()]),
        (
            "CONTAINS(POINT, CIRCLE) of shape columns",
            n::CONTAINS,
            &[points.clone(), circle.clone()],
        ),
        (
            "CONTAINS(POINT, POLYGON)",
            n::CONTAINS,
            &[points.clone(), polygon.clone()],
        ),
        (
            "INTERSECTS(CIRCLE, POLYGON)",
            n::INTERSECTS,
            &[small_circles.clone(), polygon.clone()],
        ),
        (
            "HEALPIX_INDEX(12, ra, dec)",
            n::HEALPIX_INDEX,
            &[
                Arc::new(Int64Array::from(vec![12i64])) as ArrayRef,
                ra_c.clone(),
                dec_c.clone(),
            ],
        ),
    ];
    for (label, name, args) in cases {
        g.bench_function(label, |b| {
            b.iter(|| kernels::geometry(name, black_box(args)).expect("geometry"))
        });
    }
    // Reference: the haversine distance in a plain loop (what DuckDB's cones
    // in the suite compute), with no nulls, arrays or dispatch.
    g.bench_function("reference: haversine loop", |b| {
        b.iter(|| {
            let (r0, d0) = (151.7f64.to_radians(), (-1.2f64).to_radians());
            ra.iter()
                .zip(&dec)
                .filter(|(r, d)| {
                    let (r, d) = (r.to_radians(), d.to_radians());
                    let h = ((d - d0) / 2.0).sin().powi(2)
                        + d.cos() * d0.cos() * ((r - r0) / 2.0).sin().powi(2);
                    2.0 * h.sqrt().asin() <= 0.5f64.to_radians()
                })
                .count()
        })
    });
    g.finish();
}

/// A sample catalog on local disk, built once for the groups that read one.
struct Sample {
    _dir: tempfile::TempDir,
    catalog: Catalog,
    runtime: tokio::runtime::Runtime,
}

fn sample() -> Sample {
    let dir = tempfile::TempDir::new().expect("temporary folder");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let cfg = SampleConfig {
        objects: 20_000,
        nights: 2,
        src: false,
        ..Default::default()
    };
    let chunk_dir = dir.path().join("chunks");
    generate(&cfg, &chunk_dir).expect("sample chunks");
    let url = dir.path().join("catalog");
    let catalog = runtime.block_on(async {
        let cat = Catalog::open_or_create(url.to_str().expect("UTF-8 path"), 6)
            .await
            .expect("catalog");
        chunks::ingest_all(&cat, &chunk_dir).await.expect("ingest");
        cat
    });
    Sample {
        _dir: dir,
        catalog,
        runtime,
    }
}

fn encoders(c: &mut Criterion, s: &Sample) {
    let state = s.runtime.block_on(s.catalog.state()).expect("state");
    let all = s
        .runtime
        .block_on(s.catalog.read_table(TableId::DiaSource, state.latest()))
        .expect("DiaSource");
    let rows = all.num_rows().min(10_000);
    let batch = all.slice(0, rows);
    let schema = batch.schema();
    let batches = [batch];
    let describe = Describe::default();

    let mut g = c.benchmark_group("encode DiaSource");
    g.throughput(Throughput::Elements(rows as u64));
    for f in [
        Format::Votable,
        Format::VotableTd,
        Format::Csv,
        Format::Parquet,
    ] {
        g.bench_function(f.name(), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(4 << 20);
                format::write(f, &schema, &batches, &describe, false, &mut out).expect("encode");
                out.len()
            })
        });
    }
    // Reference: Arrow IPC, a copy of the buffers with no per-value work.
    g.bench_function("reference: Arrow IPC", |b| {
        b.iter(|| {
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(Vec::with_capacity(4 << 20), &schema)
                    .expect("ipc");
            w.write(&batches[0]).expect("ipc");
            w.into_inner().expect("ipc").len()
        })
    });
    g.finish();
}

fn visibility(c: &mut Criterion, s: &Sample) {
    // The rule over a batch: 10% of rows retired at snapshot 40, a few added later.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let added: Int64Array = (0..ROWS).map(|_| rng.random_range(1..60i64)).collect();
    let retired: Int64Array = (0..ROWS)
        .map(|_| rng.random_bool(0.1).then_some(40i64))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new(catalog::schema::ADDED, DataType::Int64, false),
        Field::new(catalog::schema::RETIRED, DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(added.clone()), Arc::new(retired.clone())],
    )
    .expect("batch");

    let mut g = c.benchmark_group("visibility");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("_added/_retired rule (rows)", |b| {
        b.iter(|| {
            kernels::visible(black_box(&batch), 50)
                .expect("rule")
                .true_count()
        })
    });
    // Reference: the same rule with arrow's compute kernels, no expression.
    g.bench_function("reference: arrow kernels (rows)", |b| {
        use arrow::compute::kernels::{boolean, cmp};
        b.iter(|| {
            let k = Int64Array::new_scalar(50);
            let a = cmp::lt_eq(&added, &k).expect("cmp");
            let open = arrow::compute::is_null(&retired).expect("null");
            let later = cmp::gt(&retired, &k).expect("cmp");
            let keep =
                boolean::and(&a, &boolean::or_kleene(&open, &later).expect("or")).expect("and");
            keep.true_count()
        })
    });
    let hidden: Vec<u32> = (0..ROWS as u32).step_by(97).collect();
    g.bench_function("skip 1 in 97 retired positions (rows)", |b| {
        b.iter(|| kernels::skip_hidden(black_box(&hidden), ROWS as u64))
    });
    // Reference: filtering the same positions out with arrow's take.
    g.bench_function("reference: take of the kept positions (rows)", |b| {
        let ids = Int64Array::from_iter_values(0..ROWS as i64);
        b.iter(|| {
            let kept: UInt32Array = (0..ROWS as u32).filter(|p| p % 97 != 0).collect();
            arrow::compute::take(&ids, &kept, None).expect("take").len()
        })
    });
    g.finish();

    // Choosing a snapshot's files and hidden positions from the log, per query.
    let state = s.runtime.block_on(s.catalog.state()).expect("state");
    let latest = state.latest();
    let mut g = c.benchmark_group("visibility per query");
    for (name, table) in [
        ("DiaObject", TableId::DiaObject),
        ("DiaSource", TableId::DiaSource),
    ] {
        for (at, k) in [("latest", latest), ("first half", latest / 2)] {
            g.bench_function(BenchmarkId::new(format!("scan {name}"), at), |b| {
                b.iter(|| {
                    s.catalog
                        .scan(&state, table, black_box(k))
                        .expect("scan")
                        .files
                        .len()
                })
            });
        }
    }
    g.finish();
}

fn with_catalog(c: &mut Criterion) {
    let s = sample();
    encoders(c, &s);
    visibility(c, &s);
}

criterion_group!(benches, healpix, geometry, with_catalog);
criterion_main!(benches);
