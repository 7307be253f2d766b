//! VOSI, the DALI examples, and geometry metadata.

use super::*;

#[tokio::test]
async fn vosi_describes_the_service() {
    let s = Server::start(&["--maxrec-default", "1000", "--maxrec-limit", "50000"]);
    let (status, ct, body) = get(&format!("{}/availability", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(body.contains("<vosi:available>true</vosi:available>"));

    let (_, _, caps) = get(&format!("{}/capabilities", s.tap), &[]).await;
    assert!(
        caps.contains("standardID=\"ivo://ivoa.net/std/TAP\""),
        "{caps}"
    );
    assert!(caps.contains(&format!("<accessURL use=\"base\">{}</accessURL>", s.tap)));
    assert!(caps.contains("<default unit=\"row\">1000</default><hard unit=\"row\">50000</hard>"));
    assert!(caps.contains("ivo_healpix_index"), "the UDFs are declared");
    assert!(caps.contains("<mime>text/csv</mime>"));
    // The DataLink {links} endpoint results point to is declared too.
    assert!(caps.contains(&format!(
        "standardID=\"ivo://ivoa.net/std/DataLink#links-1.1\"><interface xsi:type=\"vs:ParamHTTP\" \
         role=\"std\" version=\"1.1\"><accessURL use=\"base\">{}/links</accessURL>",
        s.tap
    )));

    let (_, _, tables) = get(&format!("{}/tables", s.tap), &[]).await;
    for t in [
        "ppdb.DiaObject",
        "ppdb.DiaObjectHistory",
        "src.PromptSource",
        "TAP_SCHEMA.columns",
    ] {
        assert!(tables.contains(&format!("<name>{t}</name>")), "{t} missing");
    }
    assert!(
        tables.contains("<column><name>ra</name>") && tables.contains("<unit>deg</unit>"),
        "columns carry names and units"
    );
    // VOSI 1.1: detail=min leaves out the columns; each table has its own document.
    let (_, _, min) = get(&format!("{}/tables", s.tap), &[("detail", "min")]).await;
    assert!(min.contains("<name>ppdb.DiaObject</name>") && !min.contains("<column>"));
    let (status, _, one) = get(&format!("{}/tables/ppdb.DiaSource", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(one.contains("<vosi:table ") && one.contains("<column><name>psfFlux</name>"));
    assert!(!one.contains("ppdb.DiaObject</name>"), "one table only");
    assert_eq!(
        get(&format!("{}/tables/ppdb.Nope", s.tap), &[]).await.0,
        404
    );
}

#[tokio::test]
async fn every_example_runs_and_returns_rows() {
    let s = Server::start(&[]);
    every_example_returns_rows(&s).await;
}

/// The examples are written for the catalog served, not for the bundled sample.
#[tokio::test]
async fn the_examples_fit_any_catalog() {
    let dir = TempDir::new().unwrap();
    let chunks = dir.path().join("chunks");
    let cat = dir.path().join("cat");
    for args in [
        vec![
            "sample",
            "--out",
            chunks.to_str().unwrap(),
            "--objects",
            "500",
            "--nights",
            "2",
            "--seed",
            "11",
            "--ra",
            "200",
            "--dec",
            "10",
        ],
        vec![
            "ingest",
            "--catalog",
            cat.to_str().unwrap(),
            chunks.to_str().unwrap(),
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ppdb"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = Server::start(&["--catalog", cat.to_str().unwrap()]);
    let queries = every_example_returns_rows(&s).await;
    assert!(
        !queries
            .iter()
            .any(|q| q.contains("1000000014") || q.contains("55.0")),
        "an example names the bundled sample: {queries:?}"
    );
}

/// Under the embargo the time-travel example names a snapshot from those an
/// anonymous caller is shown (half the last public one, 8 on the sample with
/// this cutoff): before, half the latest (12) told how many came after it.
#[tokio::test]
async fn the_examples_do_not_count_the_snapshots_after_the_embargo_cutoff() {
    let s = Server::start(&["--embargo-until", "61001.6"]);
    let queries = every_example_returns_rows(&s).await;
    let travel: Vec<_> = queries.iter().filter(|q| q.contains("AS OF")).collect();
    assert!(
        !travel.is_empty() && travel.iter().all(|q| q.contains("AS OF 4")),
        "{travel:?}"
    );
}

#[tokio::test]
async fn geometry_fields_carry_their_dali_xtype() {
    let s = Server::start(&[]);
    let (_, _, body) = get(
        &format!("{}/sync", s.tap),
        &[(
            "QUERY",
            "SELECT TOP 1 diaObjectId, POINT('ICRS', ra, dec) AS p, CIRCLE('ICRS', ra, dec, 0.1) AS c, \
             POLYGON('ICRS', 1, 1, 2, 1, 2, 2) AS g FROM ppdb.DiaObject ORDER BY diaObjectId",
        )],
    )
    .await;
    for want in [
        "<FIELD name=\"p\" datatype=\"double\" arraysize=\"2\" xtype=\"point\"",
        "<FIELD name=\"c\" datatype=\"double\" arraysize=\"3\" xtype=\"circle\"",
        "<FIELD name=\"g\" datatype=\"double\" arraysize=\"*\" xtype=\"polygon\"",
    ] {
        assert!(body.contains(want), "{want} in {body}");
    }
    assert!(!body.contains("arraysize=\"1\""), "{body}");
}
