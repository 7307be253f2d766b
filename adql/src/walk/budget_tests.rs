//! The limits that bound what planning a query costs, where no deadline can
//! reach: tokens, output columns times grouping keys, LIKE patterns, how
//! deep expressions nest and how many operations they hold.

use super::tests::schema;
use crate::parse;

#[test]
fn grouping_wide_selects_by_many_keys_is_refused_at_the_group_by() {
    let grouped = |keys: usize| {
        let cols: Vec<String> = (0..1000).map(|i| format!("ra AS c{i}")).collect();
        let by: Vec<String> = (0..keys).map(|i| format!("c{i}")).collect();
        format!(
            "SELECT {} FROM ppdb.DiaObject GROUP BY {}",
            cols.join(", "),
            by.join(", ")
        )
    };
    assert!(parse(&grouped(crate::MAX_GROUPED / 1000), &schema()).is_ok());
    let over = grouped(crate::MAX_GROUPED / 1000 + 1);
    let e = parse(&over, &schema()).unwrap_err();
    assert!(e.message.contains("groups too many columns"), "{e}");
    let at = over.find("GROUP BY c0").unwrap() + "GROUP BY ".len() + 1;
    assert_eq!((e.line, e.column), (1, at as u64), "{e}");
}

#[test]
fn grouped_selects_count_together_across_set_operations() {
    // 32 of these took 24 s to plan: each alone is within the limit.
    let cols: Vec<String> = (0..1000).map(|i| format!("ra AS c{i}")).collect();
    let by: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let one = format!(
        "SELECT {} FROM ppdb.DiaObject GROUP BY {}",
        cols.join(", "),
        by.join(", ")
    );
    assert!(parse(&[one.as_str(); 2].join(" UNION "), &schema()).is_ok());
    let e = parse(&[one.as_str(); 3].join(" UNION "), &schema()).unwrap_err();
    assert!(e.message.contains("over all its SELECTs"), "{e}");
}

#[test]
fn a_query_of_more_tokens_than_the_limit_is_refused_before_parsing() {
    let list = |n: usize| {
        let values = vec!["0"; n].join(",");
        format!("SELECT ra FROM ppdb.DiaObject WHERE diaObjectId IN ({values})")
    };
    // Eleven tokens around the list, and one comma between each two values.
    let fits = (crate::MAX_TOKENS - 11).div_ceil(2);
    assert!(parse(&list(fits), &schema()).is_ok());
    let e = parse(&list(fits + 1), &schema()).unwrap_err();
    assert!(e.message.contains("more than 200000 tokens"), "{e}");
    assert!(e.hint.unwrap_or_default().contains("upload"));
}

#[test]
fn a_text_that_surely_has_too_many_tokens_is_refused_before_tokenizing() {
    // Two million values (4 MiB) once took a server to 2.9 GB; the commas alone
    // pass the limit, and quoted text or comments do not count.
    let values = vec!["0"; 2_000_000].join(",");
    let adql = format!("SELECT ra FROM ppdb.DiaObject WHERE diaObjectId IN ({values})");
    let e = parse(&adql, &schema()).unwrap_err();
    assert!(e.message.contains("more than 200000 tokens"), "{e}");
    let column = usize::try_from(e.column).unwrap();
    assert!(column < 500_000, "found early: {e}");
    let commas = ",".repeat(300_000);
    let quoted =
        format!("SELECT '{commas}' AS a, \"{commas}\" AS b FROM ppdb.DiaObject -- {commas}");
    let e = parse(&quoted, &schema()).unwrap_err();
    assert!(!e.message.contains("tokens"), "{e}");
}

#[test]
fn whitespace_costs_linear_time_and_past_a_million_blanks_is_refused() {
    // A run of whitespace made every token look ahead across all of it: 16 000
    // spaces took 3 s, the 4 MiB a request may carry hours (a hostile pass).
    // Half a million blanks, each its own token, now parse at once.
    let blanks = |n: usize, b: &str| {
        format!(
            "SELECT TOP 1 ra{}FROM ppdb.DiaObject WHERE ra > -1{}",
            b.repeat(n / 2),
            b.repeat(n / 2)
        )
    };
    assert!(parse(&blanks(500_000, " "), &schema()).is_ok());
    assert!(parse(&blanks(500_000, "\n"), &schema()).is_ok());
    let e = parse(&blanks(crate::MAX_BLANKS + 2, "\t"), &schema()).unwrap_err();
    assert!(e.message.contains("spaces, tabs and line breaks"), "{e}");
    // Every white space the tokenizer skips counts, a vertical tab and
    // Unicode's no-break and em spaces too (each cost more than a space).
    for b in ["\u{b}", "\u{a0}", "\u{2003}", "\u{3000}"] {
        let e = parse(&blanks(crate::MAX_BLANKS + 2, b), &schema()).unwrap_err();
        assert!(
            e.message.contains("spaces, tabs and line breaks"),
            "{b:?}: {e}"
        );
    }
    assert!(parse(&blanks(1000, "\u{a0}"), &schema()).is_ok());
    // Blanks inside a comment are one token.
    let comment = format!(
        "SELECT TOP 1 ra FROM ppdb.DiaObject /* {} */",
        " ".repeat(crate::MAX_BLANKS + 2)
    );
    assert!(parse(&comment, &schema()).is_ok());
}

#[test]
fn a_like_pattern_from_a_column_is_refused_where_an_upload_is_read() {
    let mut tables = schema();
    tables.push(crate::Table {
        schema: "TAP_UPLOAD".into(),
        name: "t".into(),
        columns: vec![crate::Column {
            name: "p".into(),
            unit: None,
        }],
        key: vec![],
    });
    let from_catalog = "SELECT o.ra FROM ppdb.DiaObject AS o, ppdb.DiaSource AS s \
                        WHERE CAST(o.ra AS VARCHAR) LIKE CAST(s.ra AS VARCHAR) || '%'";
    assert!(parse(from_catalog, &tables).is_ok());
    let from_upload = "SELECT o.ra FROM ppdb.DiaObject AS o, TAP_UPLOAD.t AS u \
                       WHERE CAST(o.ra AS VARCHAR) LIKE u.p";
    let e = parse(from_upload, &tables).unwrap_err();
    assert!(e.message.contains("reads an upload"), "{e}");
    let literal = "SELECT o.ra FROM ppdb.DiaObject AS o, TAP_UPLOAD.t AS u WHERE u.p LIKE 'NGC%'";
    assert!(parse(literal, &tables).is_ok());
}

#[test]
fn functions_and_operators_nest_at_most_forty_deep_with_the_place_of_the_one_too_deep() {
    // Planning a chain costs the cube of its depth: `id + 1 + 1 ...` with 499
    // operators (2 KB) planned for 17 s in one step no deadline reaches.
    let chain = |n: usize| format!("SELECT ra{} FROM ppdb.DiaObject", " + 1".repeat(n));
    assert!(parse(&chain(crate::MAX_NESTING), &schema()).is_ok());
    let e = parse(&chain(crate::MAX_NESTING + 1), &schema()).unwrap_err();
    assert!(e.message.contains("nest at most 40 deep"), "{e}");
    assert_eq!(
        (e.line, e.column),
        (1, 13),
        "the innermost +, at its right operand: {e}"
    );
    let nested = |n: usize| {
        format!(
            "SELECT {}ra{} FROM ppdb.DiaObject",
            "ABS(".repeat(n),
            ")".repeat(n)
        )
    };
    assert!(parse(&nested(crate::MAX_NESTING), &schema()).is_ok());
    let e = parse(&nested(crate::MAX_NESTING + 1), &schema()).unwrap_err();
    assert_eq!(
        (e.line, e.column),
        (1, 8 + 4 * crate::MAX_NESTING as u64),
        "{e}"
    );
    // AND and OR chains are not deep in that sense: they plan in linear time.
    let ors: Vec<String> = (0..240).map(|i| format!("diaObjectId = {i}")).collect();
    let q = format!("SELECT ra FROM ppdb.DiaObject WHERE {}", ors.join(" OR "));
    super::tests::parses_on_a_grown_stack(q);
}

#[test]
fn operations_are_counted_over_the_whole_query_and_stop_at_the_limit() {
    // 500 columns of 10 nested functions: 20 operations each (a call and its
    // argument), 10 000 in all.
    let select = |cols: usize| {
        let e = format!("{}ra{}", "ABS(".repeat(10), ")".repeat(10));
        let list: Vec<String> = (0..cols).map(|i| format!("{e} AS c{i}")).collect();
        format!("SELECT {} FROM ppdb.DiaObject", list.join(", "))
    };
    let q = parse(&select(500), &schema()).expect("at the limit");
    assert_eq!(q.operations, crate::MAX_OPERATIONS);
    let e = parse(&select(501), &schema()).unwrap_err();
    assert!(e.message.contains("more than 10000 operations"), "{e}");
    // Literal lists cost one operation, whatever their length.
    let ids: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let q = format!(
        "SELECT ra FROM ppdb.DiaObject WHERE diaObjectId IN ({})",
        ids.join(", ")
    );
    assert!(parse(&q, &schema()).expect("a long IN list").operations < 10);
}

#[test]
fn signs_of_numbers_and_the_star_of_select_are_not_operators() {
    // 600 negative values: once 600 operators, refused with advice to write
    // exactly this IN list.
    let values: Vec<String> = (1..=600).map(|i| format!("-{i}")).collect();
    let q = format!(
        "SELECT COUNT(*) FROM ppdb.DiaObject WHERE ROUND(ra, 0) IN ({})",
        values.join(", ")
    );
    assert!(parse(&q, &schema()).is_ok());
    let stars: Vec<String> = (0..600).map(|_| "COUNT(*)".to_string()).collect();
    let q = format!("SELECT {} FROM ppdb.DiaObject", stars.join(", "));
    assert!(parse(&q, &schema()).is_ok());
    // Subtraction still counts, with or without spaces.
    let chain = |op: &str| format!("SELECT ra{} FROM ppdb.DiaObject", op.repeat(501));
    for op in [" - 1", "-1", " * 2"] {
        let e = parse(&chain(op), &schema()).unwrap_err();
        assert!(e.message.contains("more than 500 operators"), "{op}: {e}");
    }
}
