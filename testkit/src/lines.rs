//! Record batches as sorted text lines, to compare results whatever their order.

use arrow::array::RecordBatch;

/// Each row as its values joined by commas, sorted.
pub fn sorted_lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .unwrap()
            })
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
    }
    out.sort();
    out
}
