//! The walk's checks and rewrites, query by query.

use crate::{AsOf, Column, MAX_NESTING, Table, parse};

pub(super) fn schema() -> Vec<Table> {
    let col = |n: &str, u: Option<&str>| Column {
        name: n.into(),
        unit: u.map(Into::into),
    };
    vec![
        Table {
            schema: "ppdb".into(),
            name: "DiaObject".into(),
            columns: vec![
                col("diaObjectId", None),
                col("ra", Some("deg")),
                col("dec", Some("deg")),
                col("g_psfFluxMean", Some("nJy")),
            ],
            key: vec![],
        },
        Table {
            schema: "ppdb".into(),
            name: "DiaSource".into(),
            columns: vec![
                col("diaSourceId", None),
                col("diaObjectId", None),
                col("ra", Some("deg")),
                col("dec", Some("deg")),
                col("midpointMjdTai", Some("d")),
            ],
            key: vec![],
        },
    ]
}

#[test]
fn text_literals_stop_at_64_kib_in_all_with_the_place_of_the_one_past_it() {
    let half = "x".repeat(32 << 10);
    let ok = format!("SELECT '{half}' AS a, '{half}' AS b FROM ppdb.DiaObject");
    assert!(parse(&ok, &schema()).is_ok());
    let over = format!("SELECT '{half}' AS a, '{half}' AS b, 'y' AS c FROM ppdb.DiaObject");
    let e = parse(&over, &schema()).unwrap_err();
    assert!(e.message.contains("more than 64 KiB"), "{e}");
    let col = usize::try_from(e.column).unwrap();
    assert_eq!(&over[col - 1..col + 2], "'y'", "{e}");
}

/// The checking passes recurse as deep as a chain; the engine gives them a
/// grown stack, as this does (a debug build needs more than 2 MiB).
pub(super) fn parses_on_a_grown_stack(adql: String) {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || assert!(parse(&adql, &schema()).is_ok()))
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn with_queries_that_multiply_the_tables_read_are_refused_before_planning() {
    // Each WITH query reads the one before twice: 2^(n-1) tables in all.
    let fan = |n: usize| {
        let mut q = "WITH c0 AS (SELECT ra FROM ppdb.DiaObject)".to_string();
        for i in 1..n {
            q += &format!(
                ", c{i} AS (SELECT ra FROM c{} UNION ALL SELECT ra FROM c{})",
                i - 1,
                i - 1
            );
        }
        q + &format!(" SELECT COUNT(*) AS n FROM c{}", n - 1)
    };
    assert!(parse(&fan(6), &schema()).is_ok(), "32 tables are allowed");
    let text = fan(7);
    let e = parse(&text, &schema()).unwrap_err();
    assert!(
        e.message
            .contains("WITH query c6 reads more than 32 tables"),
        "{e}"
    );
    let col = usize::try_from(e.column).unwrap();
    assert_eq!(&text[col - 1..col + 1], "c6", "{e}");
    // A long chain that uses each once reads one table.
    let chain: String = (1..400)
        .map(|i| format!(", c{i} AS (SELECT ra FROM c{})", i - 1))
        .collect();
    let chain = format!("WITH c0 AS (SELECT ra FROM ppdb.DiaObject){chain} SELECT ra FROM c399");
    parses_on_a_grown_stack(chain);
}

#[test]
fn expressions_the_planner_would_copy_out_of_bounds_are_refused() {
    // COALESCE copies every argument but its last: nested there, an
    // expression doubles per level (21 levels took a server past 3 GB).
    let nested = |n: usize| {
        format!(
            "SELECT {}ra{} FROM ppdb.DiaObject",
            "COALESCE(".repeat(n),
            ", 2)".repeat(n)
        )
    };
    // Eleven levels make 2^11 copies; twelve pass the operations a query
    // may hold (`MAX_OPERATIONS`) before they pass the copies.
    assert!(parse(&nested(11), &schema()).is_ok());
    for n in [12, 13, 25] {
        let e = parse(&nested(n), &schema()).unwrap_err();
        assert!(
            e.message.contains("copied more than 2^12 times")
                || e.message.contains("more than 10000 operations"),
            "{n}: {e}"
        );
    }
    // Nested in its last argument nothing is copied; a long IN list is
    // compared as a list.
    let last = format!(
        "SELECT {}ra{} FROM ppdb.DiaObject",
        "COALESCE(NULL, ".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    parses_on_a_grown_stack(last);
    let ids: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
    let long = format!(
        "SELECT ra FROM ppdb.DiaObject WHERE diaObjectId IN ({})",
        ids.join(", ")
    );
    assert!(parse(&long, &schema()).is_ok());
}

#[test]
fn subqueries_nest_at_most_twelve_deep() {
    let nested = |n: usize| {
        format!(
            "SELECT ra FROM ppdb.DiaObject WHERE 1 IN {}(1){}",
            "(SELECT 1 FROM ppdb.DiaObject WHERE 1 IN ".repeat(n),
            ")".repeat(n)
        )
    };
    parses_on_a_grown_stack(nested(11));
    let e = parse(&nested(12), &schema()).unwrap_err();
    assert!(e.message.contains("subqueries more than 12 deep"), "{e}");
}

#[test]
fn set_operation_chains_count_as_operators() {
    // 3 000 of them overflowed the checking pass and killed the server.
    let chain = |n: usize| vec!["SELECT ra FROM ppdb.DiaObject"; n].join(" UNION ALL ");
    parses_on_a_grown_stack(chain(crate::MAX_READS as usize));
    // Past 32 SELECTs the tables read are too many; past 501 the
    // operators are, found before anything is parsed.
    let e = parse(&chain(crate::MAX_READS as usize + 1), &schema()).unwrap_err();
    assert!(e.message.contains("reads more than 32 tables"), "{e}");
    for n in [crate::MAX_OPERATORS + 2, 3000] {
        let e = parse(&chain(n), &schema()).unwrap_err();
        assert!(e.message.contains("more than 500 operators"), "{e}");
    }
}

#[test]
fn operator_chains_stop_at_the_limit_with_the_place_of_the_one_too_many() {
    let chain = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("ra = {i}")).collect();
        format!("SELECT ra FROM ppdb.DiaObject WHERE {}", terms.join(" OR "))
    };
    // n comparisons and n - 1 ORs.
    let at_limit = crate::MAX_OPERATORS.div_ceil(2);
    let long = chain(at_limit);
    parses_on_a_grown_stack(long);
    let e = parse(&chain(at_limit + 1), &schema()).unwrap_err();
    assert!(e.message.contains("more than 500 operators"), "{e}");
    assert_eq!(e.line, 1);
    let text = chain(at_limit + 1);
    let col = usize::try_from(e.column).unwrap();
    assert_eq!(&text[col - 1..col], "=", "{e}");
    assert!(e.hint.unwrap().contains("IN ("));
}

#[test]
fn a_table_named_in_single_quotes_is_refused_at_its_place() {
    let e = parse("SELECT *\nFROM  '/etc/passwd'", &schema()).unwrap_err();
    assert_eq!((e.line, e.column), (2, 8), "{e}");
}

fn ok(q: &str) -> String {
    match parse(q, &schema()) {
        Ok(q) => q.statement.to_string(),
        Err(e) => panic!("{q}: {e}"),
    }
}

fn err(q: &str) -> crate::Error {
    match parse(q, &schema()) {
        Ok(x) => panic!("{q} was accepted as {}", x.statement),
        Err(e) => e,
    }
}

#[test]
fn a_result_never_has_two_columns_of_one_name() {
    let s = ok("SELECT ra, RA FROM ppdb.DiaObject");
    assert!(s.contains("ra, ra AS \"ra_2\""), "{s}");
    // Columns a wildcard brings in keep their names; the explicit one moves.
    let s = ok("SELECT ra, * FROM ppdb.DiaObject");
    assert!(s.starts_with("SELECT ra AS \"ra_2\", *"), "{s}");
    let s = ok("SELECT o.*, s.ra FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s");
    assert!(s.contains("s.ra AS \"ra_2\""), "{s}");
    let s = ok(
        "SELECT DiaSource.*, o.ra FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource USING (diaObjectId)",
    );
    assert!(s.contains("o.ra AS \"ra_2\""), "{s}");
    // Not when the wildcard is of another table.
    let s = ok("SELECT s.*, o.g_psfFluxMean FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s");
    assert!(!s.contains("_2"), "{s}");
    // Wildcards that would bring in one name twice are written out, and
    // renamed as explicit columns are.
    let s = ok(
        "SELECT * FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON s.diaObjectId = o.diaObjectId",
    );
    assert!(!s.contains('*'), "{s}");
    assert!(s.contains("s.ra AS \"ra_2\""), "{s}");
    assert!(s.contains("s.diaObjectId AS \"diaObjectId_2\""), "{s}");
    let s = ok("SELECT o.*, s.* FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s");
    assert!(s.contains("s.dec AS \"dec_2\""), "{s}");
    // A join that merges its columns shows them once: left to the planner.
    let s = ok("SELECT * FROM ppdb.DiaObject JOIN ppdb.DiaSource USING (diaObjectId)");
    assert!(s.contains('*'), "{s}");
    let e = err("SELECT ra AS x, dec AS X FROM ppdb.DiaObject");
    assert_eq!((e.line, e.column), (1, 24), "{e}");
    assert!(e.message.contains("already has a column named X"), "{e}");
    let e = err("SELECT *, dec AS ra FROM ppdb.DiaObject");
    assert_eq!((e.line, e.column), (1, 18), "{e}");
}

#[test]
fn names_take_the_schema_spelling() {
    let s = ok("select diaobjectid, RA from PPDB.diaobject");
    assert!(s.contains("diaObjectId"), "{s}");
    assert!(s.contains("\"ppdb\".\"DiaObject\""), "{s}");
    let e = err("SELECT \"diaobjectid\" FROM ppdb.DiaObject");
    assert!(e.message.contains("does not match the case"), "{e}");
    assert_eq!((e.line, e.column), (1, 8));
}

#[test]
fn a_qualified_column_takes_its_own_table_s_spelling() {
    // An upload spelled as astronomers spell it, beside the catalog's `ra`.
    let mut tables = schema();
    tables.push(Table {
        schema: "TAP_UPLOAD".into(),
        name: "pos".into(),
        columns: ["srcid", "RA", "DEC", "rad"]
            .iter()
            .map(|n| Column {
                name: (*n).into(),
                unit: None,
            })
            .collect(),
        key: vec![],
    });
    let q = parse(
        "SELECT t.srcid, o.diaObjectId FROM TAP_UPLOAD.pos AS t JOIN ppdb.DiaObject AS o \
         ON CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', t.ra, t.\"DEC\", t.rad)) = 1",
        &tables,
    )
    .expect("accepted");
    let s = q.statement.to_string();
    assert!(s.contains("o.ra") && s.contains("o.dec"), "{s}");
    assert!(s.contains("t.RA") && s.contains("t.\"DEC\""), "{s}");
    // A quoted alias spelled differently from a column of the same name.
    let q = parse(
        "SELECT s.\"RA\" FROM (SELECT ra AS \"RA\" FROM ppdb.DiaSource) AS s",
        &tables,
    );
    assert!(q.is_ok(), "{:?}", q.err());
    let e = parse("SELECT o.\"RA\" FROM ppdb.DiaObject AS o", &tables).unwrap_err();
    assert!(e.message.contains("does not match the case of ra"), "{e}");
}

#[test]
fn unknown_names_get_a_hint_and_a_position() {
    let e = err("SELECT ra,\n  diaobjid FROM ppdb.DiaObject");
    assert_eq!((e.line, e.column), (2, 3));
    assert!(e.hint.unwrap().contains("diaObjectId"));
    let e = err("SELECT * FROM ppdb.DiaObjekt");
    assert!(e.hint.unwrap().contains("ppdb.DiaObject"));
}

#[test]
fn top_becomes_a_limit_and_limit_is_refused() {
    assert!(ok("SELECT TOP 5 ra FROM ppdb.DiaObject").ends_with("LIMIT 5"));
    assert!(ok("SELECT TOP 5 ra FROM ppdb.DiaObject OFFSET 3").ends_with("LIMIT 5 OFFSET 3"));
    let e = err("SELECT ra FROM ppdb.DiaObject LIMIT 5");
    assert!(e.hint.unwrap().contains("TOP"));
    let e = err("SELECT TOP 5 DISTINCT ra FROM ppdb.DiaObject");
    assert!(e.message.contains("DISTINCT"), "{e}");
}

#[test]
fn one_select_only() {
    for q in [
        "DROP TABLE ppdb.DiaObject",
        "INSERT INTO ppdb.DiaObject VALUES (1)",
        "SELECT 1; SELECT 2",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "COPY ppdb.DiaObject TO '/tmp/x'",
        "SET x = 1",
        "EXPLAIN SELECT 1",
    ] {
        let e = err(q);
        assert!(e.line >= 1, "{q}: {e}");
    }
    assert!(
        err("SELECT version() FROM ppdb.DiaObject")
            .message
            .contains("unknown function")
    );
}

#[test]
fn time_travel_is_taken_out_and_must_agree() {
    let q = parse(
        "SELECT o.ra FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 3 AS o",
        &schema(),
    );
    // sqlparser puts the alias before the version clause; both orders are tried.
    let q = q.or_else(|_| {
        parse(
            "SELECT o.ra FROM ppdb.DiaObject AS o FOR SYSTEM_TIME AS OF 3",
            &schema(),
        )
    });
    let q = q.unwrap();
    assert_eq!(q.as_of, Some(AsOf::Snapshot(3)));
    assert!(!q.statement.to_string().contains("SYSTEM_TIME"));
    let e = err(
        "SELECT * FROM ppdb.DiaObject FOR SYSTEM_TIME AS OF 3 NATURAL JOIN ppdb.DiaSource FOR SYSTEM_TIME AS OF 4",
    );
    assert!(e.message.contains("one snapshot"), "{e}");
}

#[test]
fn geometry_becomes_udfs() {
    let s = ok(
        "SELECT ra FROM ppdb.DiaObject WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 20, 0.5)) = 1",
    );
    assert!(s.contains("adql_cone(ra, dec, 10, 20, 0.5) = 1"), "{s}");
    let s = ok("SELECT DISTANCE(POINT(ra, dec), POINT(1, 2)) FROM ppdb.DiaObject");
    assert!(s.contains("adql_distance(ra, dec, 1, 2)"), "{s}");
    let e = err(
        "SELECT ra FROM ppdb.DiaObject WHERE CONTAINS(POINT('GALACTIC', ra, dec), CIRCLE(1, 2, 3)) = 1",
    );
    assert!(e.message.contains("GALACTIC"));
    assert!(
        err("SELECT REGION('x') FROM ppdb.DiaObject")
            .message
            .contains("REGION")
    );
}

#[test]
fn in_unit_uses_the_column_unit() {
    let s = ok("SELECT IN_UNIT(ra, 'arcsec') FROM ppdb.DiaObject");
    assert!(s.contains("ra * 3.6e3"), "{s}");
    assert!(
        err("SELECT IN_UNIT(ra, 'nJy') FROM ppdb.DiaObject")
            .message
            .contains("cannot convert")
    );
}

#[test]
fn hex_literals_are_integers() {
    assert!(ok("SELECT diaObjectId & 0xFF FROM ppdb.DiaObject").contains("& 255"));
}
