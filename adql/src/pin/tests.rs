use super::*;
use crate::{Column, parse};

fn schema() -> Vec<Table> {
    let t = |name: &str, cols: &[&str]| Table {
        schema: "ppdb".into(),
        name: name.into(),
        columns: cols
            .iter()
            .map(|c| Column {
                name: c.to_string(),
                unit: None,
            })
            .collect(),
        key: vec![],
    };
    let keyed = |mut table: Table, key: &[&str]| {
        table.key = key.iter().map(|k| k.to_string()).collect();
        table
    };
    vec![
        t("DiaObject", &["diaObjectId", "ra", "dec"]),
        t(
            "DiaSource",
            &["diaSourceId", "diaObjectId", "ra", "dec", "band"],
        ),
        keyed(
            t(
                "DiaForcedSource",
                &[
                    "diaForcedSourceId",
                    "diaObjectId",
                    "visit",
                    "detector",
                    "psfFlux",
                ],
            ),
            &["diaObjectId", "visit", "detector"],
        ),
    ]
}

#[test]
fn a_table_key_shown_in_the_output_is_the_whole_tie_break() {
    let p = pinned("SELECT * FROM ppdb.DiaForcedSource", true);
    assert!(p.adql.ends_with("ORDER BY 2, 3, 4"), "{}", p.adql);
    let p = pinned(
        "SELECT psfFlux, f.detector, visit AS v, diaObjectId FROM ppdb.DiaForcedSource AS f ORDER BY psfFlux DESC",
        true,
    );
    assert!(
        p.adql.ends_with("ORDER BY psfFlux DESC, 4, 3, 2"),
        "{}",
        p.adql
    );
    // The key not shown, shown only inside an expression, or rows grouped or
    // joined: every column is needed.
    for (q, order) in [
        (
            "SELECT TOP 5 visit, detector FROM ppdb.DiaForcedSource",
            "ORDER BY 1, 2",
        ),
        (
            "SELECT TOP 5 visit + 0 AS visit, detector, diaObjectId FROM ppdb.DiaForcedSource",
            "ORDER BY 1, 2, 3",
        ),
        (
            "SELECT TOP 5 visit, detector, diaObjectId, COUNT(*) FROM ppdb.DiaForcedSource GROUP BY visit, detector, diaObjectId",
            "ORDER BY 1, 2, 3, 4",
        ),
        (
            "SELECT TOP 5 f.visit, f.detector, f.diaObjectId FROM ppdb.DiaForcedSource AS f JOIN ppdb.DiaObject AS o ON o.diaObjectId = f.diaObjectId",
            "ORDER BY 1, 2, 3",
        ),
    ] {
        let p = pinned(q, true);
        assert!(p.adql.ends_with(order), "{q}: {}", p.adql);
    }
}

fn pinned(adql: &str, cut: bool) -> Pinned {
    let s = schema();
    let q = parse(adql, &s).unwrap();
    let p = pin(&q, &s, 7, cut).unwrap();
    // The pinned form is itself valid ADQL and reads the same snapshot.
    let again = parse(&p.adql, &s).unwrap_or_else(|e| panic!("{}: {e}", p.adql));
    assert_eq!(again.as_of, Some(crate::AsOf::Snapshot(7)), "{}", p.adql);
    // The planner's form the first run executes is what a replay parses.
    assert_eq!(
        p.query.statement.to_string(),
        again.statement.to_string(),
        "{}",
        p.adql
    );
    p
}

#[test]
fn every_table_reads_the_snapshot() {
    let p = pinned(
        "SELECT o.ra FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource s ON s.diaObjectId = o.diaObjectId",
        false,
    );
    assert_eq!(
        p.adql.matches("FOR SYSTEM_TIME AS OF 7").count(),
        2,
        "{}",
        p.adql
    );
    assert!(!p.ordered);
}

#[test]
fn an_explicit_snapshot_is_replaced_by_the_resolved_one() {
    let p = pinned(
        "SELECT ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF '2025-01-01'",
        false,
    );
    assert!(
        p.adql.contains("AS OF 7") && !p.adql.contains("2025"),
        "{}",
        p.adql
    );
}

#[test]
fn top_gets_a_total_order_over_every_column() {
    let p = pinned("SELECT TOP 3 * FROM ppdb.DiaObject", false);
    assert!(p.adql.ends_with("ORDER BY 1, 2, 3"), "{}", p.adql);
    assert!(p.ordered);
}

#[test]
fn user_order_comes_first_and_ties_are_broken() {
    let p = pinned(
        "SELECT ra, dec FROM ppdb.DiaObject ORDER BY dec DESC",
        false,
    );
    assert!(p.adql.ends_with("ORDER BY dec DESC, 1, 2"), "{}", p.adql);
    let p = pinned("SELECT ra, dec FROM ppdb.DiaObject ORDER BY 2", false);
    assert!(p.adql.ends_with("ORDER BY 2, 1"), "{}", p.adql);
}

#[test]
fn a_cut_orders_the_top_level_only_when_asked() {
    assert!(!pinned("SELECT ra FROM ppdb.DiaObject", false).ordered);
    let p = pinned("SELECT ra FROM ppdb.DiaObject", true);
    assert!(p.ordered && p.adql.ends_with("ORDER BY 1"), "{}", p.adql);
}

#[test]
fn using_and_natural_joins_show_join_columns_once() {
    let p = pinned(
        "SELECT TOP 1 * FROM ppdb.DiaObject JOIN ppdb.DiaSource USING (diaObjectId)",
        false,
    );
    assert!(
        p.adql.ends_with("ORDER BY 1, 2, 3, 4, 5, 6, 7"),
        "{}",
        p.adql
    );
    let p = pinned(
        "SELECT TOP 1 * FROM ppdb.DiaObject NATURAL JOIN ppdb.DiaSource",
        false,
    );
    assert!(p.adql.ends_with("ORDER BY 1, 2, 3, 4, 5"), "{}", p.adql);
    let p = pinned(
        "SELECT TOP 1 s.* FROM ppdb.DiaObject o JOIN ppdb.DiaSource s USING (diaObjectId)",
        false,
    );
    assert!(p.adql.ends_with("ORDER BY 1, 2, 3, 4, 5"), "{}", p.adql);
}

#[test]
fn nested_tops_are_ordered_where_they_are() {
    let p = pinned(
        "WITH c AS (SELECT TOP 2 ra FROM ppdb.DiaObject) \
         SELECT * FROM c WHERE ra IN (SELECT TOP 1 ra FROM ppdb.DiaSource) \
         UNION SELECT TOP 1 dec FROM ppdb.DiaObject",
        false,
    );
    assert_eq!(p.adql.matches("ORDER BY 1").count(), 3, "{}", p.adql);
    assert!(!p.adql.contains("c FOR SYSTEM_TIME"), "{}", p.adql);
    assert!(!p.ordered);
}

#[test]
fn hex_literals_stay_adql() {
    let p = pinned(
        "SELECT ra FROM ppdb.DiaObject WHERE diaObjectId = 0xFF",
        false,
    );
    assert!(p.adql.contains("= 255"), "{}", p.adql);
}
