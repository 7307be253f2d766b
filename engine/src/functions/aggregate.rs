//! `SUM` and `AVG` of floating-point values that do not depend on row order.
//!
//! DataFusion adds floats in whatever order rows arrive: per partition, then
//! partial results in arrival order. Floating-point addition is not
//! associative, so the last bits of a sum can change with the number of
//! cores, the grouping of files into partitions, or a compaction that merges
//! files — and a replayed token would then fail its checksum. These versions
//! keep the exact sum (Shewchuk's non-overlapping partials, as Python's
//! `math.fsum` does) and round once at the end, so the answer is the correctly
//! rounded sum whatever the order. A plain SUM of integers fails on overflow
//! (`integer_sum`); decimal and duration inputs go to DataFusion's own
//! implementations, which are exact already.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF, Signature,
};

/// The two functions, under DataFusion's own names so they replace the built-ins.
pub(crate) fn all() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(Exact::new(Kind::Sum)),
        AggregateUDF::from(Exact::new(Kind::Avg)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Sum,
    Avg,
}

/// `sum` or `avg`: DataFusion's function, with an exact accumulator for floats.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Exact {
    kind: Kind,
    signature: Signature,
    aliases: Vec<String>,
}

impl Exact {
    fn new(kind: Kind) -> Exact {
        let inner = Exact::builtin(kind);
        Exact {
            kind,
            signature: inner.signature().clone(),
            aliases: inner.aliases().to_vec(),
        }
    }

    fn builtin(kind: Kind) -> Arc<AggregateUDF> {
        match kind {
            Kind::Sum => sum_udaf(),
            Kind::Avg => avg_udaf(),
        }
    }

    fn inner(&self) -> Arc<AggregateUDF> {
        Exact::builtin(self.kind)
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float64)
}

/// A plain `SUM` of signed integers, which must fail rather than wrap.
fn is_integer_sum(kind: Kind, returns: &DataType, distinct: bool) -> bool {
    kind == Kind::Sum && returns == &DataType::Int64 && !distinct
}

/// A `SUM(DISTINCT ...)` of signed integers, likewise.
fn is_distinct_integer_sum(kind: Kind, returns: &DataType, distinct: bool) -> bool {
    kind == Kind::Sum && returns == &DataType::Int64 && distinct
}

impl AggregateUDFImpl for Exact {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Sum => "sum",
            Kind::Avg => "avg",
        }
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner().inner().return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner().inner().coerce_types(arg_types)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner().inner().default_value(data_type)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if is_integer_sum(self.kind, args.return_field.data_type(), args.is_distinct) {
            return Ok(Box::new(crate::functions::integer_sum::IntSum::default()));
        }
        if is_distinct_integer_sum(self.kind, args.return_field.data_type(), args.is_distinct) {
            return Ok(Box::new(
                crate::functions::integer_sum::DistinctIntSum::default(),
            ));
        }
        if is_float(args.return_field.data_type()) {
            return Ok(Box::new(ExactAccumulator {
                kind: self.kind,
                sum: FSum::default(),
                count: 0,
                distinct: args.is_distinct.then(HashSet::new),
            }));
        }
        self.inner().inner().accumulator(args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        if is_integer_sum(self.kind, args.return_field.data_type(), args.is_distinct) {
            return Ok(crate::functions::integer_sum::state_fields(args.name));
        }
        if is_distinct_integer_sum(self.kind, args.return_field.data_type(), args.is_distinct) {
            return Ok(crate::functions::integer_sum::distinct_state_fields(
                args.name,
            ));
        }
        if is_float(args.return_field.data_type()) {
            let item = Arc::new(Field::new_list_field(DataType::Float64, true));
            return Ok(vec![
                Arc::new(Field::new(
                    format!("{}[partials]", args.name),
                    DataType::List(item),
                    true,
                )),
                Arc::new(Field::new(
                    format!("{}[special]", args.name),
                    DataType::Float64,
                    true,
                )),
                Arc::new(Field::new(
                    format!("{}[count]", args.name),
                    DataType::UInt64,
                    true,
                )),
            ]);
        }
        self.inner().inner().state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        if is_integer_sum(self.kind, args.return_field.data_type(), args.is_distinct) {
            return true;
        }
        if is_float(args.return_field.data_type()) {
            return !args.is_distinct;
        }
        self.inner().inner().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        if is_integer_sum(self.kind, args.return_field.data_type(), args.is_distinct) {
            return Ok(Box::new(crate::functions::integer_sum::IntSums::default()));
        }
        if is_float(args.return_field.data_type()) {
            return Ok(Box::new(ExactGroups {
                kind: self.kind,
                sums: Vec::new(),
                counts: Vec::new(),
            }));
        }
        self.inner().inner().create_groups_accumulator(args)
    }
}

/// An exact running sum of finite floats, plus the (order-independent) sum of
/// the infinities and NaNs seen.
#[derive(Debug, Default, Clone)]
struct FSum {
    partials: Vec<f64>,
    special: Option<f64>,
}

impl FSum {
    fn add(&mut self, x: f64) {
        if !x.is_finite() {
            // inf + -inf is NaN and NaN absorbs everything, in any order.
            self.special = Some(self.special.unwrap_or(0.0) + x);
            return;
        }
        let mut x = x;
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        if x.is_finite() {
            self.partials.push(x);
        } else {
            // Only reachable for sums beyond f64's range: it overflows like any sum.
            self.special = Some(self.special.unwrap_or(0.0) + x);
        }
    }

    /// The exact sum rounded once to the nearest f64 (ties to even).
    fn value(&self) -> f64 {
        if let Some(s) = self.special {
            return s;
        }
        let p = &self.partials;
        let mut n = p.len();
        if n == 0 {
            return 0.0;
        }
        n -= 1;
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Correct a halfway case the pairwise rounding above resolved the wrong way.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[derive(Debug)]
struct ExactAccumulator {
    kind: Kind,
    sum: FSum,
    count: u64,
    /// For `DISTINCT`: the values seen, by bits (summed at the end).
    distinct: Option<HashSet<u64>>,
}

impl ExactAccumulator {
    fn add(&mut self, x: f64) {
        match &mut self.distinct {
            // 0.0 and -0.0 are one value.
            Some(seen) => {
                seen.insert(if x == 0.0 { 0 } else { x.to_bits() });
            }
            None => {
                self.sum.add(x);
                self.count += 1;
            }
        }
    }

    fn totals(&self) -> (FSum, u64) {
        match &self.distinct {
            Some(seen) => {
                let mut s = FSum::default();
                for b in seen {
                    s.add(f64::from_bits(*b));
                }
                (s, seen.len() as u64)
            }
            None => (self.sum.clone(), self.count),
        }
    }
}

impl Accumulator for ExactAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let v = arrow::compute::cast(&values[0], &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        for x in v.iter().flatten() {
            self.add(x);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (sum, count) = self.totals();
        if count == 0 {
            return Ok(ScalarValue::Float64(None));
        }
        Ok(ScalarValue::Float64(Some(match self.kind {
            Kind::Sum => sum.value(),
            Kind::Avg => sum.value() / count as f64,
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.sum.partials.capacity() * 8
            + self.distinct.as_ref().map_or(0, |s| s.capacity() * 16)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // DISTINCT ships its values (a duplicate in two partitions must count once).
        let (values, special, count) = match &self.distinct {
            Some(seen) => (
                seen.iter().map(|b| f64::from_bits(*b)).collect::<Vec<_>>(),
                None,
                seen.len() as u64,
            ),
            None => (self.sum.partials.clone(), self.sum.special, self.count),
        };
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(
            values.into_iter().map(Some),
        )]);
        Ok(vec![
            ScalarValue::List(Arc::new(list)),
            ScalarValue::Float64(special),
            ScalarValue::UInt64(Some(count)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        let special: &Float64Array = states[1].as_primitive::<Float64Type>();
        let counts: &UInt64Array = states[2].as_primitive::<UInt64Type>();
        for row in 0..lists.len() {
            if lists.is_null(row) {
                continue;
            }
            let values = lists.value(row);
            let values = values.as_primitive::<Float64Type>();
            match &mut self.distinct {
                Some(_) => {
                    for x in values.iter().flatten() {
                        self.add(x);
                    }
                }
                None => {
                    for x in values.iter().flatten() {
                        self.sum.add(x);
                    }
                    if special.is_valid(row) {
                        self.sum.add(special.value(row));
                    }
                    if counts.is_valid(row) {
                        self.count += counts.value(row);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Exact sums for many groups at once (GROUP BY), so that grouped float
/// aggregates keep DataFusion's vectorised hash aggregation.
struct ExactGroups {
    kind: Kind,
    sums: Vec<FSum>,
    counts: Vec<u64>,
}

impl ExactGroups {
    fn grow(&mut self, total: usize) {
        if self.sums.len() < total {
            self.sums.resize_with(total, FSum::default);
            self.counts.resize(total, 0);
        }
    }
}

/// State arrays: partials per group, the sum of non-finite values, the count.
fn state_arrays(sums: &[FSum], counts: &[u64]) -> Vec<ArrayRef> {
    let lists = ListArray::from_iter_primitive::<Float64Type, _, _>(
        sums.iter()
            .map(|s| Some(s.partials.iter().copied().map(Some))),
    );
    let special: Float64Array = sums.iter().map(|s| s.special).collect();
    let counts: UInt64Array = counts.iter().copied().map(Some).collect();
    vec![Arc::new(lists), Arc::new(special), Arc::new(counts)]
}

impl GroupsAccumulator for ExactGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let v = arrow::compute::cast(&values[0], &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        for (row, &g) in group_indices.iter().enumerate() {
            if v.is_null(row) || opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            self.sums[g].add(v.value(row));
            self.counts[g] += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        let counts = emit_to.take_needed(&mut self.counts);
        let out: Float64Array = sums
            .iter()
            .zip(&counts)
            .map(|(s, &n)| {
                (n > 0).then(|| match self.kind {
                    Kind::Sum => s.value(),
                    Kind::Avg => s.value() / n as f64,
                })
            })
            .collect();
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sums = emit_to.take_needed(&mut self.sums);
        let counts = emit_to.take_needed(&mut self.counts);
        Ok(state_arrays(&sums, &counts))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let lists = values[0].as_list::<i32>();
        let special = values[1].as_primitive::<Float64Type>();
        let counts = values[2].as_primitive::<UInt64Type>();
        for (row, &g) in group_indices.iter().enumerate() {
            if !lists.is_null(row) {
                let partials = lists.value(row);
                for x in partials.as_primitive::<Float64Type>().iter().flatten() {
                    self.sums[g].add(x);
                }
            }
            if special.is_valid(row) {
                self.sums[g].add(special.value(row));
            }
            if counts.is_valid(row) {
                self.counts[g] += counts.value(row);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let v = arrow::compute::cast(&values[0], &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        let mut sums = Vec::with_capacity(v.len());
        let mut counts = Vec::with_capacity(v.len());
        for row in 0..v.len() {
            let mut s = FSum::default();
            let take =
                v.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if take {
                s.add(v.value(row));
            }
            sums.push(s);
            counts.push(u64::from(take));
        }
        Ok(state_arrays(&sums, &counts))
    }

    fn size(&self) -> usize {
        // Partials are few per group (a handful of doubles); counting them exactly
        // would cost a pass over every group per batch.
        self.sums.capacity() * (std::mem::size_of::<FSum>() + 4 * 8) + self.counts.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::FSum;

    fn fsum(xs: &[f64]) -> f64 {
        let mut s = FSum::default();
        for &x in xs {
            s.add(x);
        }
        s.value()
    }

    #[test]
    fn the_sum_does_not_depend_on_order() {
        let xs: Vec<f64> = (0..2000)
            .map(|i| ((i * 7919) % 1000) as f64 * 0.1 - 37.3 + 1e-9 * i as f64)
            .collect();
        let mut rev = xs.clone();
        rev.reverse();
        let mut shuffled = xs.clone();
        shuffled.sort_by_key(|a| a.to_bits() % 97);
        assert_eq!(fsum(&xs).to_bits(), fsum(&rev).to_bits());
        assert_eq!(fsum(&xs).to_bits(), fsum(&shuffled).to_bits());
        // Naive left-to-right sums of the same values do differ in the last bits.
        let naive = |v: &[f64]| v.iter().sum::<f64>();
        assert!(naive(&xs) != naive(&shuffled) || naive(&xs) != naive(&rev));
    }

    #[test]
    fn it_is_exact_where_naive_sums_are_not() {
        assert_eq!(fsum(&[0.1; 10]), 1.0);
        assert_eq!(fsum(&[1e100, 1.0, -1e100, 1e-100]), 1.0 + 1e-100);
        assert_eq!(fsum(&[]), 0.0);
        assert!(fsum(&[1.0, f64::NAN]).is_nan());
        assert_eq!(fsum(&[1.0, f64::INFINITY]), f64::INFINITY);
        assert!(fsum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    }
}
