//! Every refusal case of CHUNKS.md §4: the whole chunk is refused with an error
//! naming the file, the column and the row, and the catalog stays as it was.

use testkit::chunks as support;

use arrow_schema::DataType;
use catalog::{Catalog, Error, IngestOutcome, Refusal, TableId};
use support::{TestChunk, V, loc, rows, updates};
use tempfile::TempDir;

const OBJ: &[&str] = &["diaObjectId", "validityStartMjdTai", "nDiaSources"];
const SRC: &[&str] = &["diaSourceId", "diaObjectId", "visit", "midpointMjdTai"];
const FORCED: &[&str] = &["diaForcedSourceId", "diaObjectId", "visit", "detector"];

fn objects(v: &[(i64, f64)]) -> support::Rows {
    rows(
        TableId::DiaObject,
        OBJ,
        v.iter()
            .map(|(id, s)| vec![V::I(*id), V::F(*s), V::I(1)])
            .collect(),
    )
}

fn sources(v: &[(i64, i64)]) -> support::Rows {
    rows(
        TableId::DiaSource,
        SRC,
        v.iter()
            .map(|(id, o)| vec![V::I(*id), V::I(*o), V::I(5), V::F(100.0)])
            .collect(),
    )
}

/// A catalog holding one committed chunk: objects 1 and 2, sources 10 and 11 of
/// object 1, a forced source of object 1, and object 2 closed.
async fn base() -> (TempDir, TempDir, Catalog) {
    let dir = TempDir::new().unwrap();
    let chunks = TempDir::new().unwrap();
    let cat = Catalog::open_or_create(dir.path().to_str().unwrap(), 6)
        .await
        .unwrap();
    let c = TestChunk::replica(
        1,
        vec![
            objects(&[(1, 100.0), (2, 100.0)]),
            sources(&[(10, 1), (11, 1)]),
            rows(
                TableId::DiaForcedSource,
                FORCED,
                vec![vec![V::I(50), V::I(1), V::I(5), V::I(1)]],
            ),
            updates(vec![
                (
                    "withdraw_diasource",
                    vec![
                        ("diaSourceId", V::I(11)),
                        ("timeWithdrawnMjdTai", V::F(101.0)),
                    ],
                ),
                (
                    "close_diaobject_validity",
                    vec![("diaObjectId", V::I(2)), ("validityEndMjdTai", V::F(102.0))],
                ),
            ]),
        ],
    );
    let out = cat.ingest(&loc(&c.write(chunks.path()))).await.unwrap();
    assert!(matches!(out, IngestOutcome::Committed(_)));
    (dir, chunks, cat)
}

/// Ingests `chunk`, expects a refusal of `kind`, and checks that nothing changed.
async fn refused(cat: &Catalog, chunks: &TempDir, chunk: TestChunk, kind: Refusal) -> Error {
    let before = cat.state().await.unwrap();
    let err = cat
        .ingest(&loc(&chunk.write(chunks.path())))
        .await
        .unwrap_err();
    assert_eq!(err.refusal(), Some(kind), "unexpected error: {err}");
    let after = cat.state().await.unwrap();
    assert_eq!(
        after.version, before.version,
        "a refused chunk must not add a log entry"
    );
    assert_eq!(after.latest(), before.latest());
    assert_eq!(
        cat.read_table(TableId::DiaSource, 1)
            .await
            .unwrap()
            .num_rows(),
        2
    );
    err
}

fn at(err: &Error) -> (Option<String>, Option<String>, Option<usize>) {
    let l = err.location().cloned().unwrap_or_default();
    (l.file, l.column, l.row)
}

// §4.1 — the manifest and its files.

#[tokio::test]
async fn missing_manifest_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![objects(&[(3, 1.0)])]).write(chunks.path());
    std::fs::remove_file(dir.join("chunk.json")).unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::Manifest));
    assert!(err.to_string().contains("chunk.json is missing"), "{err}");
}

#[tokio::test]
async fn unparsable_manifest_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![objects(&[(3, 1.0)])]).write(chunks.path());
    std::fs::write(dir.join("chunk.json"), "{not json").unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::Manifest));
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[tokio::test]
async fn manifest_lacking_a_key_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![]).write(chunks.path());
    std::fs::write(
        dir.join("chunk.json"),
        r#"{"format":"ppdb-replica-chunk/1","chunk_id":2,"unique_id":"u","files":[]}"#,
    )
    .unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert_eq!(at(&err).1.as_deref(), Some("last_update_time"));
}

#[tokio::test]
async fn manifest_key_of_wrong_type_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![]).write(chunks.path());
    std::fs::write(
        dir.join("chunk.json"),
        r#"{"format":"ppdb-replica-chunk/1","chunk_id":"two","last_update_time":"2025-11-26T03:20:00Z","unique_id":"u","files":[]}"#,
    )
    .unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::Manifest));
    assert_eq!(at(&err).1.as_deref(), Some("chunk_id"));
}

#[tokio::test]
async fn listed_file_missing_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![objects(&[(3, 1.0)])]).write(chunks.path());
    std::fs::remove_file(dir.join("DiaObject.parquet")).unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert_eq!(at(&err).0.as_deref(), Some("DiaObject.parquet"));
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn row_count_mismatch_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![objects(&[(3, 1.0)])]).write(chunks.path());
    let text = std::fs::read_to_string(dir.join("chunk.json"))
        .unwrap()
        .replace("\"rows\": 1", "\"rows\": 7");
    std::fs::write(dir.join("chunk.json"), text).unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::Manifest));
    assert!(
        err.to_string().contains("has 1 rows but chunk.json says 7"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_table_is_refused() {
    let (_d, chunks, cat) = base().await;
    let mut r = objects(&[(3, 1.0)]);
    r.table = "DiaObjectLast".into();
    let err = refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![r]),
        Refusal::Manifest,
    )
    .await;
    assert!(
        err.to_string().contains("unknown table \"DiaObjectLast\""),
        "{err}"
    );
}

#[tokio::test]
async fn table_listed_twice_is_refused() {
    let (_d, chunks, cat) = base().await;
    let dir = TestChunk::replica(2, vec![objects(&[(3, 1.0)])]).write(chunks.path());
    let text = std::fs::read_to_string(dir.join("chunk.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let f = v["files"][0].clone();
    v["files"].as_array_mut().unwrap().push(f);
    std::fs::write(dir.join("chunk.json"), v.to_string()).unwrap();
    let err = cat.ingest(&loc(&dir)).await.unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

// §4.2 — order and identity.

#[tokio::test]
async fn chunk_id_not_greater_is_refused() {
    let (_d, chunks, cat) = base().await;
    let mut c = TestChunk::replica(0, vec![objects(&[(3, 1.0)])]);
    c.unique_id = "other".into();
    let err = refused(&cat, &chunks, c, Refusal::Order).await;
    assert_eq!(at(&err).1.as_deref(), Some("chunk_id"));
}

#[tokio::test]
async fn committed_chunk_id_with_other_unique_id_is_refused() {
    let (_d, chunks, cat) = base().await;
    let mut c = TestChunk::replica(1, vec![objects(&[(3, 1.0)])]);
    c.unique_id = "different".into();
    let err = refused(&cat, &chunks, c, Refusal::Order).await;
    assert_eq!(at(&err).1.as_deref(), Some("unique_id"));
}

#[tokio::test]
async fn exact_resend_is_a_no_op() {
    let (_d, chunks, cat) = base().await;
    let before = cat.state().await.unwrap().version;
    // Same id and unique id as the base chunk: nothing new, success.
    let c = TestChunk::replica(1, vec![objects(&[(1, 100.0), (2, 100.0)])]);
    let out = cat.ingest(&loc(&c.write(chunks.path()))).await.unwrap();
    assert_eq!(out, IngestOutcome::AlreadyCommitted { chunk_id: 1 });
    assert_eq!(cat.state().await.unwrap().version, before);
}

// §4.3 — columns.

#[tokio::test]
async fn missing_required_column_is_refused() {
    let (_d, chunks, cat) = base().await;
    let c = TestChunk::replica(2, vec![objects(&[(3, 1.0)]).without("ra")]);
    let err = refused(&cat, &chunks, c, Refusal::Column).await;
    assert_eq!(
        at(&err),
        (Some("DiaObject.parquet".into()), Some("ra".into()), None)
    );
}

#[tokio::test]
async fn wrong_physical_type_is_refused() {
    let (_d, chunks, cat) = base().await;
    // apdb.yaml: detector is `short`; int32 is a widening the contract forbids.
    let c = TestChunk::replica(
        2,
        vec![sources(&[(20, 1)]).with_type("detector", DataType::Int32)],
    );
    let err = refused(&cat, &chunks, c, Refusal::Column).await;
    assert_eq!(at(&err).1.as_deref(), Some("detector"));
    assert!(err.to_string().contains("Int32"), "{err}");
}

#[tokio::test]
async fn column_not_in_schema_is_refused() {
    let (_d, chunks, cat) = base().await;
    let c = TestChunk::replica(
        2,
        vec![sources(&[(20, 1)]).with("mySpecialFlux", DataType::Float64, V::F(1.0))],
    );
    let err = refused(&cat, &chunks, c, Refusal::Column).await;
    assert_eq!(at(&err).1.as_deref(), Some("mySpecialFlux"));
}

#[tokio::test]
async fn null_in_a_not_null_column_is_refused_with_its_row() {
    let (_d, chunks, cat) = base().await;
    let r = rows(
        TableId::DiaSource,
        SRC,
        vec![
            vec![V::I(20), V::I(1), V::I(6), V::F(1.0)],
            vec![V::I(21), V::I(1), V::Null, V::F(1.0)],
        ],
    );
    let err = refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![r]),
        Refusal::Column,
    )
    .await;
    assert_eq!(
        at(&err),
        (
            Some("DiaSource.parquet".into()),
            Some("visit".into()),
            Some(1)
        )
    );
}

// §4.4 — keys and values.

#[tokio::test]
async fn duplicate_key_inside_the_chunk_is_refused() {
    let (_d, chunks, cat) = base().await;
    let c = TestChunk::replica(2, vec![sources(&[(20, 1), (21, 1), (20, 2)])]);
    let err = refused(&cat, &chunks, c, Refusal::Value).await;
    assert_eq!(
        at(&err),
        (
            Some("DiaSource.parquet".into()),
            Some("diaSourceId".into()),
            Some(2)
        )
    );
}

#[tokio::test]
async fn duplicate_key_against_committed_data_is_refused() {
    let (_d, chunks, cat) = base().await;
    let c = TestChunk::replica(2, vec![sources(&[(20, 1), (10, 1)])]);
    let err = refused(&cat, &chunks, c, Refusal::Value).await;
    assert_eq!(at(&err).2, Some(1));
    assert!(err.to_string().contains("already committed"), "{err}");
}

#[tokio::test]
async fn duplicate_dia_object_version_against_committed_data_is_refused() {
    let (_d, chunks, cat) = base().await;
    let c = TestChunk::replica(2, vec![objects(&[(1, 100.0)])]);
    let err = refused(&cat, &chunks, c, Refusal::Value).await;
    assert!(err.to_string().contains("already committed"), "{err}");
}

#[tokio::test]
async fn dia_object_with_validity_end_is_refused() {
    let (_d, chunks, cat) = base().await;
    let c = TestChunk::replica(
        2,
        vec![objects(&[(3, 1.0)]).with("validityEndMjdTai", DataType::Float64, V::F(2.0))],
    );
    let err = refused(&cat, &chunks, c, Refusal::Value).await;
    assert_eq!(
        at(&err),
        (
            Some("DiaObject.parquet".into()),
            Some("validityEndMjdTai".into()),
            Some(0)
        )
    );
}

#[tokio::test]
async fn band_outside_ugrizy_is_refused() {
    let (_d, chunks, cat) = base().await;
    let r = rows(
        TableId::DiaSource,
        &["diaSourceId", "band"],
        vec![vec![V::I(20), V::S("g")], vec![V::I(21), V::S("q")]],
    );
    let err = refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![r]),
        Refusal::Value,
    )
    .await;
    assert_eq!(
        at(&err),
        (
            Some("DiaSource.parquet".into()),
            Some("band".into()),
            Some(1)
        )
    );
}

#[tokio::test]
async fn ra_out_of_range_is_refused() {
    let (_d, chunks, cat) = base().await;
    let r = rows(
        TableId::DiaSource,
        &["diaSourceId", "ra"],
        vec![vec![V::I(20), V::F(360.0)]],
    );
    let err = refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![r]),
        Refusal::Value,
    )
    .await;
    assert_eq!(at(&err).1.as_deref(), Some("ra"));
}

#[tokio::test]
async fn dec_out_of_range_is_refused() {
    let (_d, chunks, cat) = base().await;
    let r = rows(
        TableId::DiaObject,
        &["diaObjectId", "dec"],
        vec![vec![V::I(3), V::F(-90.5)]],
    );
    let err = refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![r]),
        Refusal::Value,
    )
    .await;
    assert_eq!(at(&err).1.as_deref(), Some("dec"));
}

// §4.5 — update records.

async fn refused_update(records: Vec<(&str, Vec<(&str, V)>)>) -> Error {
    let (_d, chunks, cat) = base().await;
    refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![updates(records)]),
        Refusal::Update,
    )
    .await
}

#[tokio::test]
async fn unknown_update_type_is_refused() {
    let err = refused_update(vec![("delete_everything", vec![("diaObjectId", V::I(1))])]).await;
    assert_eq!(
        at(&err),
        (
            Some("updates.parquet".into()),
            Some("update_type".into()),
            Some(0)
        )
    );
}

#[tokio::test]
async fn update_lacking_a_field_is_refused() {
    let err = refused_update(vec![(
        "withdraw_diasource",
        vec![("diaSourceId", V::I(10))],
    )])
    .await;
    assert_eq!(at(&err).1.as_deref(), Some("timeWithdrawnMjdTai"));
}

#[tokio::test]
async fn update_of_unknown_row_is_refused() {
    let err = refused_update(vec![
        (
            "withdraw_diasource",
            vec![
                ("diaSourceId", V::I(10)),
                ("timeWithdrawnMjdTai", V::F(2.0)),
            ],
        ),
        (
            "withdraw_diasource",
            vec![
                ("diaSourceId", V::I(999)),
                ("timeWithdrawnMjdTai", V::F(2.0)),
            ],
        ),
    ])
    .await;
    assert_eq!(
        at(&err),
        (
            Some("updates.parquet".into()),
            Some("diaSourceId".into()),
            Some(1)
        )
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn update_whose_dia_object_id_disagrees_is_refused() {
    let err = refused_update(vec![(
        "reassign_diasource",
        vec![
            ("diaSourceId", V::I(10)),
            ("diaObjectId", V::I(2)),
            ("ssObjectId", V::I(7)),
            ("ssObjectReassocTimeMjdTai", V::F(2.0)),
        ],
    )])
    .await;
    assert_eq!(at(&err).1.as_deref(), Some("diaObjectId"));
}

#[tokio::test]
async fn withdrawing_a_withdrawn_row_is_refused() {
    let err = refused_update(vec![(
        "withdraw_diasource",
        vec![
            ("diaSourceId", V::I(11)),
            ("timeWithdrawnMjdTai", V::F(2.0)),
        ],
    )])
    .await;
    assert!(err.to_string().contains("already withdrawn"), "{err}");
}

#[tokio::test]
async fn withdrawing_a_forced_source_twice_in_one_chunk_is_refused() {
    let w = || {
        (
            "withdraw_diaforcedsource",
            vec![
                ("diaObjectId", V::I(1)),
                ("visit", V::I(5)),
                ("detector", V::I(1)),
                ("timeWithdrawnMjdTai", V::F(2.0)),
            ],
        )
    };
    let err = refused_update(vec![w(), w()]).await;
    assert_eq!(at(&err).2, Some(1));
}

#[tokio::test]
async fn reassigning_a_withdrawn_source_is_refused() {
    let err = refused_update(vec![(
        "reassign_diasource",
        vec![
            ("diaSourceId", V::I(11)),
            ("ssObjectId", V::I(7)),
            ("ssObjectReassocTimeMjdTai", V::F(2.0)),
        ],
    )])
    .await;
    assert!(err.to_string().contains("already withdrawn"), "{err}");
}

#[tokio::test]
async fn closing_an_object_without_open_version_is_refused() {
    let err = refused_update(vec![(
        "close_diaobject_validity",
        vec![("diaObjectId", V::I(2)), ("validityEndMjdTai", V::F(200.0))],
    )])
    .await;
    assert!(err.to_string().contains("no open version"), "{err}");
}

#[tokio::test]
async fn updating_an_object_without_open_version_is_refused() {
    let err = refused_update(vec![(
        "update_n_dia_sources",
        vec![("diaObjectId", V::I(2)), ("nDiaSources", V::I(3))],
    )])
    .await;
    assert!(err.to_string().contains("no open version"), "{err}");
}

#[tokio::test]
async fn closing_before_the_version_starts_is_refused() {
    let err = refused_update(vec![(
        "close_diaobject_validity",
        vec![("diaObjectId", V::I(1)), ("validityEndMjdTai", V::F(50.0))],
    )])
    .await;
    assert_eq!(at(&err).1.as_deref(), Some("validityEndMjdTai"));
}

#[tokio::test]
async fn text_outside_ascii_in_a_char_column_is_refused_with_its_row() {
    let (_d, chunks, cat) = base().await;
    let r = rows(
        TableId::DiaSource,
        &["diaSourceId", "reliabilityVersion"],
        vec![vec![V::I(20), V::S("v1")], vec![V::I(21), V::S("v2-é")]],
    );
    let err = refused(
        &cat,
        &chunks,
        TestChunk::replica(2, vec![r]),
        Refusal::Value,
    )
    .await;
    assert_eq!(
        at(&err),
        (
            Some("DiaSource.parquet".into()),
            Some("reliabilityVersion".into()),
            Some(1)
        )
    );
    assert!(err.to_string().contains("not ASCII"), "{err}");
}
