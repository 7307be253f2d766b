//! Random chunk sequences (new versions, late versions, withdrawals,
//! reassignments, closures, in-place updates) checked at every snapshot
//! against a plain in-memory model of CHUNKS.md §4 — with compaction and
//! maintenance racing commits, after compaction, and from a freshly opened
//! handle. Some chunks are committed
//! through a second handle, so rows are found both in the memory of the
//! handle that wrote them and in the store.

use testkit::chunks as support;

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use catalog::{Catalog, TableId};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::{TestChunk, V, loc, rows, updates};

/// One DiaObject version as the model keeps it: the spec's own terms.
#[derive(Clone, Debug)]
struct Ver {
    start: f64,
    closure: Option<f64>,
    n_dia: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Src {
    obj: Option<i64>,
    withdrawn: Option<f64>,
    ss: Option<i64>,
    reassoc: Option<f64>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    objects: BTreeMap<i64, Vec<Ver>>,
    sources: BTreeMap<i64, Src>,
    forced: BTreeMap<(i64, i64, i64), Option<f64>>,
}

type ObjRow = (i64, u64, Option<u64>, i64);

impl Model {
    /// DiaObjectHistory as CHUNKS.md §4 defines it.
    fn object_rows(&self) -> Vec<ObjRow> {
        let mut out = Vec::new();
        for (id, vs) in &self.objects {
            let mut vs = vs.clone();
            vs.sort_by(|a, b| a.start.total_cmp(&b.start));
            for (i, v) in vs.iter().enumerate() {
                let end = vs.get(i + 1).map(|n| n.start).or(v.closure);
                out.push((*id, v.start.to_bits(), end.map(f64::to_bits), v.n_dia));
            }
        }
        out.sort();
        out
    }

    fn latest_open(&self, id: i64) -> bool {
        self.objects
            .get(&id)
            .and_then(|vs| vs.iter().max_by(|a, b| a.start.total_cmp(&b.start)))
            .is_some_and(|v| v.closure.is_none())
    }

    fn latest_mut(&mut self, id: i64) -> &mut Ver {
        self.objects
            .get_mut(&id)
            .unwrap()
            .iter_mut()
            .max_by(|a, b| a.start.total_cmp(&b.start))
            .unwrap()
    }
}

fn pos(rng: &mut ChaCha8Rng) -> (f64, f64) {
    // A patch straddling several order-6 partitions.
    (
        55.0 + rng.random_range(-1.2..1.2),
        -30.0 + rng.random_range(-1.2..1.2),
    )
}

/// Generates a valid chunk against `model`, applies it to the model, and returns it.
fn next_chunk(rng: &mut ChaCha8Rng, model: &mut Model, chunk_id: i64, ids: &mut i64) -> TestChunk {
    let mut obj_rows = Vec::new();
    let mut src_rows = Vec::new();
    let mut forced_rows = Vec::new();
    let mut recs: Vec<(&str, Vec<(&str, V)>)> = Vec::new();
    let mut obj_pos: BTreeMap<i64, (f64, f64)> = BTreeMap::new();

    // New objects, and new (possibly late) versions of known ones.
    for _ in 0..rng.random_range(0..4) {
        *ids += 1;
        let id = *ids;
        let p = pos(rng);
        obj_pos.insert(id, p);
        for _ in 0..rng.random_range(1..3) {
            let start = rng.random_range(0..1000) as f64 + 0.5;
            if model
                .objects
                .get(&id)
                .is_some_and(|v| v.iter().any(|x| x.start == start))
            {
                continue;
            }
            let n = rng.random_range(0..9);
            obj_rows.push(vec![V::I(id), V::F(start), V::I(n), V::F(p.0), V::F(p.1)]);
            model.objects.entry(id).or_default().push(Ver {
                start,
                closure: None,
                n_dia: n,
            });
        }
    }
    let known: Vec<i64> = model.objects.keys().copied().collect();
    for _ in 0..rng.random_range(0..4) {
        if known.is_empty() {
            break;
        }
        let id = known[rng.random_range(0..known.len())];
        let start = rng.random_range(0..1000) as f64 + 0.25;
        if model.objects[&id].iter().any(|x| x.start == start) {
            continue;
        }
        let n = rng.random_range(0..9);
        let p = pos(rng);
        obj_rows.push(vec![V::I(id), V::F(start), V::I(n), V::F(p.0), V::F(p.1)]);
        model.objects.get_mut(&id).unwrap().push(Ver {
            start,
            closure: None,
            n_dia: n,
        });
    }
    // New sources (most with an object, some orphans) and forced sources.
    let known: Vec<i64> = model.objects.keys().copied().collect();
    for _ in 0..rng.random_range(0..6) {
        *ids += 1;
        let obj = (!known.is_empty() && rng.random_bool(0.85))
            .then(|| known[rng.random_range(0..known.len())]);
        let p = pos(rng);
        src_rows.push(vec![
            V::I(*ids),
            obj.map_or(V::Null, V::I),
            V::F(p.0),
            V::F(p.1),
        ]);
        model.sources.insert(
            *ids,
            Src {
                obj,
                ..Default::default()
            },
        );
    }
    for _ in 0..rng.random_range(0..4) {
        if known.is_empty() {
            break;
        }
        let obj = known[rng.random_range(0..known.len())];
        let key = (obj, rng.random_range(1..6), rng.random_range(0..3));
        if model.forced.contains_key(&key) {
            continue;
        }
        *ids += 1;
        let p = pos(rng);
        forced_rows.push(vec![
            V::I(*ids),
            V::I(key.0),
            V::I(key.1),
            V::I(key.2),
            V::F(p.0),
            V::F(p.1),
        ]);
        model.forced.insert(key, None);
    }
    // Update records, each valid against the state the ones before it left.
    for _ in 0..rng.random_range(0..6) {
        let t = rng.random_range(100..2000) as f64;
        match rng.random_range(0..5) {
            0 | 1 => {
                let standing: Vec<i64> = model
                    .sources
                    .iter()
                    .filter(|(_, s)| s.withdrawn.is_none())
                    .map(|(id, _)| *id)
                    .collect();
                if standing.is_empty() {
                    continue;
                }
                let id = standing[rng.random_range(0..standing.len())];
                let s = model.sources.get_mut(&id).unwrap();
                let hint = if rng.random_bool(0.5) {
                    s.obj.map_or(V::Null, V::I)
                } else {
                    V::Null
                };
                if rng.random_bool(0.5) {
                    s.withdrawn = Some(t);
                    recs.push((
                        "withdraw_diasource",
                        vec![
                            ("diaSourceId", V::I(id)),
                            ("timeWithdrawnMjdTai", V::F(t)),
                            ("diaObjectId", hint),
                        ],
                    ));
                } else {
                    let ss = rng.random_range(1..50);
                    s.ss = Some(ss);
                    s.reassoc = Some(t);
                    s.obj = None;
                    recs.push((
                        "reassign_diasource",
                        vec![
                            ("diaSourceId", V::I(id)),
                            ("ssObjectId", V::I(ss)),
                            ("ssObjectReassocTimeMjdTai", V::F(t)),
                            ("diaObjectId", hint),
                        ],
                    ));
                }
            }
            2 => {
                let standing: Vec<(i64, i64, i64)> = model
                    .forced
                    .iter()
                    .filter(|(_, w)| w.is_none())
                    .map(|(k, _)| *k)
                    .collect();
                if standing.is_empty() {
                    continue;
                }
                let k = standing[rng.random_range(0..standing.len())];
                model.forced.insert(k, Some(t));
                recs.push((
                    "withdraw_diaforcedsource",
                    vec![
                        ("diaObjectId", V::I(k.0)),
                        ("visit", V::I(k.1)),
                        ("detector", V::I(k.2)),
                        ("timeWithdrawnMjdTai", V::F(t)),
                    ],
                ));
            }
            _ => {
                let open: Vec<i64> = model
                    .objects
                    .keys()
                    .copied()
                    .filter(|id| model.latest_open(*id))
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let id = open[rng.random_range(0..open.len())];
                let n = rng.random_range(0..20);
                let v = model.latest_mut(id);
                if rng.random_bool(0.5) {
                    let end = v.start + rng.random_range(0..50) as f64;
                    v.closure = Some(end);
                    let with_n = rng.random_bool(0.5);
                    if with_n {
                        v.n_dia = n;
                    }
                    recs.push((
                        "close_diaobject_validity",
                        vec![
                            ("diaObjectId", V::I(id)),
                            ("validityEndMjdTai", V::F(end)),
                            ("nDiaSources", if with_n { V::I(n) } else { V::Null }),
                        ],
                    ));
                } else {
                    v.n_dia = n;
                    recs.push((
                        "update_n_dia_sources",
                        vec![("diaObjectId", V::I(id)), ("nDiaSources", V::I(n))],
                    ));
                }
            }
        }
    }
    let mut files = Vec::new();
    if !obj_rows.is_empty() {
        files.push(rows(
            TableId::DiaObject,
            &[
                "diaObjectId",
                "validityStartMjdTai",
                "nDiaSources",
                "ra",
                "dec",
            ],
            obj_rows,
        ));
    }
    if !src_rows.is_empty() {
        files.push(rows(
            TableId::DiaSource,
            &["diaSourceId", "diaObjectId", "ra", "dec"],
            src_rows,
        ));
    }
    if !forced_rows.is_empty() {
        files.push(rows(
            TableId::DiaForcedSource,
            &[
                "diaForcedSourceId",
                "diaObjectId",
                "visit",
                "detector",
                "ra",
                "dec",
            ],
            forced_rows,
        ));
    }
    if !recs.is_empty() {
        files.push(updates(recs));
    }
    TestChunk::replica(chunk_id, files)
}

fn f64_opt(b: &RecordBatch, c: &str, r: usize) -> Option<u64> {
    let a = b.column_by_name(c).unwrap().as_primitive::<Float64Type>();
    a.is_valid(r).then(|| a.value(r).to_bits())
}

fn i64_opt(b: &RecordBatch, c: &str, r: usize) -> Option<i64> {
    let a = b.column_by_name(c).unwrap().as_primitive::<Int64Type>();
    a.is_valid(r).then(|| a.value(r))
}

async fn check_snapshot(cat: &Catalog, k: u64, model: &Model) {
    let b = cat.read_table(TableId::DiaObject, k).await.unwrap();
    let mut got: Vec<ObjRow> = (0..b.num_rows())
        .map(|r| {
            let n = b
                .column_by_name("nDiaSources")
                .unwrap()
                .as_primitive::<Int32Type>()
                .value(r) as i64;
            (
                i64_opt(&b, "diaObjectId", r).unwrap(),
                f64_opt(&b, "validityStartMjdTai", r).unwrap(),
                f64_opt(&b, "validityEndMjdTai", r),
                n,
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        model.object_rows(),
        "DiaObject history at snapshot {k}"
    );

    let b = cat.read_table(TableId::DiaSource, k).await.unwrap();
    let got: BTreeMap<i64, Src> = (0..b.num_rows())
        .map(|r| {
            (
                i64_opt(&b, "diaSourceId", r).unwrap(),
                Src {
                    obj: i64_opt(&b, "diaObjectId", r),
                    withdrawn: f64_opt(&b, "timeWithdrawnMjdTai", r).map(f64::from_bits),
                    ss: i64_opt(&b, "ssObjectId", r),
                    reassoc: f64_opt(&b, "ssObjectReassocTimeMjdTai", r).map(f64::from_bits),
                },
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        b.num_rows(),
        "one visible row per diaSourceId at snapshot {k}"
    );
    assert_eq!(got, model.sources, "DiaSource at snapshot {k}");

    let b = cat.read_table(TableId::DiaForcedSource, k).await.unwrap();
    let got: BTreeMap<(i64, i64, i64), Option<f64>> = (0..b.num_rows())
        .map(|r| {
            let det = b
                .column_by_name("detector")
                .unwrap()
                .as_primitive::<Int16Type>()
                .value(r) as i64;
            (
                (
                    i64_opt(&b, "diaObjectId", r).unwrap(),
                    i64_opt(&b, "visit", r).unwrap(),
                    det,
                ),
                f64_opt(&b, "timeWithdrawnMjdTai", r).map(f64::from_bits),
            )
        })
        .collect();
    assert_eq!(got.len(), b.num_rows());
    assert_eq!(got, model.forced, "DiaForcedSource at snapshot {k}");
}

/// Ingests random chunks and checks every snapshot; returns the rows retention dropped.
async fn run(seed: u64, chunks: usize) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("memory://time-model-{seed}/cat");
    let cat = Catalog::open_or_create(&url, 6).await.unwrap();
    let mut model = Model::default();
    let mut models = vec![Model::default()];
    let mut ids = 0;
    for i in 0..chunks {
        let chunk = next_chunk(&mut rng, &mut model, 10 + i as i64, &mut ids);
        let path = chunk.write(dir.path());
        // Every third chunk goes through a handle of its own, as another
        // process would: it has no rows in memory and reads what `cat` wrote
        // from the store, and `cat` must then see its commit.
        let other = match i % 3 {
            2 => Some(Catalog::open(&url).await.unwrap()),
            _ => None,
        };
        let chunk = loc(&path);
        let ingest = other.as_ref().unwrap_or(&cat).ingest(&chunk);
        // Maintenance races some commits, as `ppdb serve` runs it beside a
        // replica stream: whichever appends second starts over.
        let racing = rng.random_bool(0.4).then(|| Compaction::draw(&mut rng));
        let (done, _) = tokio::join!(ingest, async {
            if let Some(c) = racing {
                c.run(&url).await;
            }
        });
        done.unwrap_or_else(|e| panic!("chunk {i} of seed {seed}: {e}"));
        models.push(model.clone());
    }
    for (k, m) in models.iter().enumerate() {
        check_snapshot(&cat, k as u64, m).await;
    }
    // Compaction changes files, never what a snapshot shows, whatever cells it
    // chooses (partitions, coarse cells, a mix) and when it lays out again
    // files an earlier compaction wrote.
    for _ in 0..2 {
        compact_into(&url, &mut rng).await;
        let reopened = Catalog::open(&url).await.unwrap();
        for (k, m) in models.iter().enumerate() {
            check_snapshot(&reopened, k as u64, m).await;
        }
    }
    // Retention: expire the older half but one snapshot (as a live token would keep
    // it). Compaction drops rows only expired snapshots saw and vacuum deletes the
    // old files; every retained snapshot still matches the model, expired ones refuse.
    let latest = chunks as u64;
    if latest < 2 {
        return 0;
    }
    let before = latest / 2 + 1;
    let keep = rng.random_range(0..before);
    let report = cat.expire(before, &[keep]).await.unwrap();
    assert!(report.kept == vec![keep] || keep == 0, "{report:?}");
    let compacted = compact_into(&url, &mut rng).await;
    cat.vacuum(std::time::Duration::ZERO).await.unwrap();
    let reopened = Catalog::open(&url).await.unwrap();
    for (k, m) in models.iter().enumerate() {
        let k = k as u64;
        if k >= before || k == keep {
            check_snapshot(&reopened, k, m).await;
        } else {
            let e = reopened
                .read_table(TableId::DiaSource, k)
                .await
                .expect_err("an expired snapshot cannot be read");
            assert!(e.to_string().contains("expired"), "{e}");
        }
    }
    // Expiring again with nothing new to keep changes nothing and drops nothing more.
    assert_eq!(cat.compact().await.unwrap().rows_dropped, 0);
    compacted.rows_dropped
}

/// Compacts through a handle of its own (see [`Compaction`]).
async fn compact_into(url: &str, rng: &mut ChaCha8Rng) -> catalog::CompactReport {
    Compaction::draw(rng).run(url).await
}

/// A compaction keeping at most a random number of rows in a cell coarser
/// than a partition (0: into partitions), wholly or as maintenance does.
struct Compaction {
    rows: usize,
    tiered: bool,
}

impl Compaction {
    fn draw(rng: &mut ChaCha8Rng) -> Compaction {
        Compaction {
            rows: [0, 8, 64, catalog::DEFAULT_COMPACT_ROWS][rng.random_range(0..4)],
            tiered: rng.random_bool(0.5),
        }
    }

    async fn run(&self, url: &str) -> catalog::CompactReport {
        let handle = Catalog::open(url)
            .await
            .unwrap()
            .with_compact_rows(self.rows);
        if self.tiered {
            // As maintenance does it: each cell's large files left as they are.
            handle.maintain(0).await.unwrap().unwrap_or_default()
        } else {
            handle.compact().await.unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn every_snapshot_matches_the_model(seed in any::<u64>(), chunks in 1usize..9) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(seed, chunks));
    }
}

#[tokio::test]
async fn a_long_sequence_matches_the_model_through_compaction() {
    let dropped = run(7, 30).await;
    assert!(dropped > 0, "retention should have dropped superseded rows");
}
