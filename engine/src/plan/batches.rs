//! How many rows a query's batches hold.
//!
//! A query stops at its deadline, or when its caller goes away, between two
//! batches (see [`crate::plan::deadline`]); nothing can stop an arrow kernel
//! inside one. So a batch must be cheap, whatever the query does to each row:
//! its text is bounded ([`BATCH_TEXT_BYTES`]), and so is the work its
//! expressions do ([`BATCH_WORK`]). 120 columns of 40 nested `UPPER`/`LOWER`
//! over an upload of 240 values of 64 KB ran 11.6 s past a 5 s deadline in
//! one batch, and INTERSECTS of two 256-vertex polygons made per row (20 ms
//! a row) 15 s past it; such a query now runs a row or two a batch, or is
//! refused where one of its rows alone would cost more than a batch may. (DataFusion cuts a table's batches, uploads
//! included, to the batch size chosen here.)

use arrow::array::{AsArray, RecordBatch};

use crate::error::{Error, Result};
use crate::upload::Upload;

/// The bytes of text one batch of a query's rows may hold, by what the query
/// makes itself. Batches are built whole before any pool can count them: eight
/// `UPPER` copies of a 64 KiB literal in 8 192-row batches took one query to
/// 6.6 GB against a 128 MiB limit.
const BATCH_TEXT_BYTES: usize = 32 << 20;

/// The work one batch's expressions may do, in bytes passed through an
/// operation: 256 MiB take about 0.05 s here (text kernels run at about
/// 5 GB/s).
pub(crate) const BATCH_WORK: usize = 256 << 20;

/// The bytes an operation on a value of the catalog's own columns (numbers,
/// short codes such as `band`) is counted as.
const VALUE_BYTES: usize = 32;

/// The bytes one step of spherical geometry (see
/// [`adql::Query::geometry_steps`]) is counted as: about 34 ns here, where
/// the text kernels pass 170 bytes.
const GEOMETRY_STEP_BYTES: usize = 256;

/// What one row of a query costs, as the batch size follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowCost {
    /// Bytes of text one result row may carry.
    pub text: usize,
    /// Operations times the widest value they may meet, and the steps of
    /// geometry.
    pub work: usize,
}

impl RowCost {
    /// The cost of a row of `query`, given the widest text value of the tables
    /// it reads besides the catalog's (`tap_text` for TAP_SCHEMA, whose
    /// descriptions are long) and its uploads: the operations its expressions
    /// hold, each counted as if it met the widest text the query makes or
    /// reads.
    pub(crate) fn of(query: &adql::Query, uploads: &[Upload], tap_text: usize) -> RowCost {
        // Each text column's longest value: a join copies every one of them
        // into each row it makes.
        let widths: Vec<usize> = uploads.iter().flat_map(|u| text_widths(&u.batch)).collect();
        let uploaded: usize = widths.iter().sum();
        let reads_tap = query
            .tables
            .iter()
            .any(|(s, _)| s.eq_ignore_ascii_case("TAP_SCHEMA"));
        let widest = widths
            .into_iter()
            .chain([query.text_width, VALUE_BYTES])
            .chain(reads_tap.then_some(tap_text))
            .max()
            .unwrap_or(VALUE_BYTES);
        // Every column a row carries counts at least a value's bytes: operators
        // that copy rows (a merge, a sort, a join's output) copy each column
        // apart, even one the SELECT list repeats a thousand times.
        let carried = query.outputs.max(1).saturating_mul(VALUE_BYTES);
        RowCost {
            text: query
                .row_text_bytes()
                .max(carried)
                .saturating_add(uploaded)
                .max(1),
            work: query
                .operations
                .max(1)
                .saturating_mul(widest)
                .saturating_add(query.geometry_steps.saturating_mul(GEOMETRY_STEP_BYTES)),
        }
    }

    /// Rows per batch: DataFusion's `default`, or fewer (down to one) where
    /// that many rows would hold more than [`BATCH_TEXT_BYTES`] of text or
    /// cost more than [`BATCH_WORK`]. A query one row of which costs more
    /// than that is refused.
    pub(crate) fn batch_rows(&self, default: usize) -> Result<usize> {
        if self.work > BATCH_WORK {
            return Err(Error::TooMuchPerRow {
                work_mib: self.work >> 20,
                limit_mib: BATCH_WORK >> 20,
            });
        }
        let rows = (BATCH_TEXT_BYTES / self.text).min(BATCH_WORK / self.work.max(1));
        Ok(rows.clamp(1, default.max(1)))
    }
}

/// The longest value of each text column of `batch`, in bytes.
fn text_widths(batch: &RecordBatch) -> impl Iterator<Item = usize> + '_ {
    batch.columns().iter().filter_map(|c| {
        let text = c.as_string_opt::<i32>()?;
        Some(
            text.iter()
                .map(|v| v.map_or(0, str::len))
                .max()
                .unwrap_or(0),
        )
    })
}

/// The longest text value in `batch`, in bytes (0 without text columns).
pub(crate) fn widest_text(batch: &RecordBatch) -> usize {
    text_widths(batch).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn query(adql: &str) -> adql::Query {
        let schema = vec![adql::Table {
            schema: "ppdb".into(),
            name: "T".into(),
            columns: ["x", "s"]
                .map(|name| adql::Column {
                    name: name.into(),
                    unit: None,
                })
                .into(),
            key: vec!["x".into()],
        }];
        crate::plan::pipeline::deep(|| adql::parse(adql, &schema)).expect("parses")
    }

    #[test]
    fn an_ordinary_query_keeps_the_default_batch() {
        let q = query("SELECT x + 1, SIN(x), UPPER(s) FROM ppdb.T WHERE x BETWEEN 1 AND 2");
        let cost = RowCost::of(&q, &[], 4096);
        assert_eq!(cost.batch_rows(8192).ok(), Some(8192));
    }

    #[test]
    fn a_column_repeated_a_thousand_times_makes_small_batches() {
        let list = vec!["x"; 990].join(", ");
        let wide = RowCost::of(&query(&format!("SELECT {list} FROM ppdb.T")), &[], 0);
        let rows = wide.batch_rows(8192).expect("runs");
        assert!(
            rows < 8192 && rows * 990 * VALUE_BYTES <= BATCH_TEXT_BYTES,
            "{rows}"
        );
    }

    #[test]
    fn many_operations_make_small_batches_and_too_many_on_wide_text_are_refused() {
        let nested = |depth: usize, inner: &str| {
            (0..depth).fold(inner.to_string(), |e, _| format!("UPPER({e})"))
        };
        let select = |cols: usize, inner: &str| {
            let e = nested(adql::MAX_NESTING - 1, inner);
            let list: Vec<String> = (0..cols).map(|i| format!("{e} AS c{i}")).collect();
            format!("SELECT {} FROM ppdb.T", list.join(", "))
        };
        let deep = RowCost::of(&query(&select(60, "s")), &[], 0);
        let rows = deep.batch_rows(8192).expect("catalog text is short");
        assert!(rows < 8192 && rows * deep.work <= BATCH_WORK, "{rows}");
        // The same over concatenated text (up to 64 KiB a value): one row
        // alone is past the bound.
        let refused = RowCost::of(&query(&select(60, "s || s")), &[], 0).batch_rows(8192);
        assert!(
            matches!(refused, Err(Error::TooMuchPerRow { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn geometry_counts_the_vertices_it_compares() {
        // A circle of `n` vertices around (`ra`, 5), its first made per row.
        let polygon = |n: usize, ra: f64, per_row: bool| {
            let vs: Vec<String> = (0..n)
                .map(|i| {
                    let a = i as f64 / n as f64 * std::f64::consts::TAU;
                    let first = if per_row && i == 0 { "x * 0 + " } else { "" };
                    format!("{first}{:.4}, {:.4}", ra + a.cos(), 5.0 + a.sin())
                })
                .collect();
            format!("POLYGON('ICRS', {})", vs.join(", "))
        };
        let pair = |n: usize| {
            format!(
                "INTERSECTS({}, {})",
                polygon(n, 10.0, true),
                polygon(n, 12.5, false)
            )
        };
        // A point in a polygon stays in large batches.
        let inside = query(&format!(
            "SELECT x FROM ppdb.T WHERE 1 = CONTAINS(POINT(x, x), {})",
            polygon(256, 10.0, false)
        ));
        assert_eq!(inside.geometry_steps, 9 * 256);
        assert!(RowCost::of(&inside, &[], 0).batch_rows(8192).expect("runs") >= 100);
        // Two 256-vertex polygons made per row: a row a batch.
        let one = query(&format!("SELECT {} AS c FROM ppdb.T", pair(256)));
        assert_eq!(one.geometry_steps, 9 * 256 * 256);
        assert_eq!(RowCost::of(&one, &[], 0).batch_rows(8192).ok(), Some(1));
        // Vertices written as POINTs, parenthesised past the first, count
        // all the same (the first form counted 3 and ran 89 s past a deadline).
        let points: Vec<String> = (0..256)
            .map(|i| {
                let a = f64::from(i) / 256.0 * std::f64::consts::TAU;
                let p = format!("POINT({:.4}, {:.4})", 10.0 + a.cos(), 5.0 + a.sin());
                if i == 0 { p } else { format!("({p})") }
            })
            .collect();
        let hidden = query(&format!(
            "SELECT INTERSECTS(POLYGON({}), {}) AS c FROM ppdb.T",
            points.join(", "),
            polygon(256, 12.5, false)
        ));
        assert_eq!(hidden.geometry_steps, 9 * 256 * 256);
        // Two such pairs in one row are more than a batch may cost.
        let two = query(&format!(
            "SELECT {} AS a, {} AS b FROM ppdb.T",
            pair(256),
            pair(255)
        ));
        let refused = RowCost::of(&two, &[], 0).batch_rows(8192);
        assert!(
            matches!(refused, Err(Error::TooMuchPerRow { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn long_tap_schema_text_counts_only_where_the_query_reads_it() {
        let q = query("SELECT UPPER(UPPER(s)) FROM ppdb.T");
        let cost = RowCost::of(&q, &[], 1 << 20);
        assert_eq!(cost.work, q.operations * VALUE_BYTES);
    }

    #[test]
    fn uploads_count_their_widest_value() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..10)),
                Arc::new(StringArray::from_iter_values(
                    (0..10).map(|i| "y".repeat(i * 100)),
                )),
            ],
        )
        .expect("batch");
        assert_eq!(widest_text(&batch), 900);
        assert_eq!(
            text_widths(&batch).collect::<Vec<_>>(),
            [900],
            "one per text column"
        );
    }
}
