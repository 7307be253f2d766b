//! `SUM` of integers that fails on overflow: DataFusion's wraps around, so
//! the sum of a few hundred large values came out as a plausible wrong
//! number. Partial sums are kept in 128 bits (no realistic row count can
//! overflow them) and the total must fit in BIGINT.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Int64Array, ListArray,
};
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};

/// The state's type: a 128-bit integer, as a decimal of scale 0.
const STATE: DataType = DataType::Decimal128(38, 0);

/// The state fields of a sum named `name`.
pub(crate) fn state_fields(name: &str) -> Vec<FieldRef> {
    vec![Arc::new(Field::new(format!("{name}[sum]"), STATE, true))]
}

fn total(sum: Option<i128>) -> Result<Option<i64>> {
    match sum.map(i64::try_from) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(_)) => exec_err!(
            "integer overflow: the SUM does not fit in BIGINT (CAST the values to DOUBLE \
             for an approximate sum)"
        ),
    }
}

fn as_i64(values: &ArrayRef) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(values, &DataType::Int64)?)
}

fn state_array(sums: impl IntoIterator<Item = Option<i128>>) -> Result<ArrayRef> {
    let a: Decimal128Array = sums.into_iter().collect();
    Ok(Arc::new(a.with_data_type(STATE)))
}

/// One group's sum.
#[derive(Debug, Default)]
pub(crate) struct IntSum {
    sum: Option<i128>,
}

impl Accumulator for IntSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let v = as_i64(&values[0])?;
        for x in v.as_primitive::<Int64Type>().iter().flatten() {
            self.sum = Some(self.sum.unwrap_or(0) + i128::from(x));
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(total(self.sum)?))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Decimal128(self.sum, 38, 0)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for x in states[0].as_primitive::<Decimal128Type>().iter().flatten() {
            self.sum = Some(self.sum.unwrap_or(0) + x);
        }
        Ok(())
    }
}

/// The state fields of a `SUM(DISTINCT ...)` named `name`: the values seen.
pub(crate) fn distinct_state_fields(name: &str) -> Vec<FieldRef> {
    let item = Arc::new(Field::new_list_field(DataType::Int64, true));
    vec![Arc::new(Field::new(
        format!("{name}[distinct]"),
        DataType::List(item),
        true,
    ))]
}

/// One group's `SUM(DISTINCT ...)`: the values seen, summed in 128 bits at the end.
#[derive(Debug, Default)]
pub(crate) struct DistinctIntSum {
    seen: HashSet<i64>,
}

impl Accumulator for DistinctIntSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let v = as_i64(&values[0])?;
        self.seen
            .extend(v.as_primitive::<Int64Type>().iter().flatten());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let sum = (!self.seen.is_empty()).then(|| self.seen.iter().map(|&x| i128::from(x)).sum());
        Ok(ScalarValue::Int64(total(sum)?))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.seen.capacity() * 16
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(
            self.seen.iter().copied().map(Some),
        )]);
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                let values = lists.value(row);
                self.seen
                    .extend(values.as_primitive::<Int64Type>().iter().flatten());
            }
        }
        Ok(())
    }
}

/// Sums of many groups.
#[derive(Debug, Default)]
pub(crate) struct IntSums {
    sums: Vec<Option<i128>>,
}

impl IntSums {
    fn grow(&mut self, n: usize) {
        if self.sums.len() < n {
            self.sums.resize(n, None);
        }
    }
}

fn taken(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl GroupsAccumulator for IntSums {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let v = as_i64(&values[0])?;
        let v = v.as_primitive::<Int64Type>();
        for (row, &g) in group_indices.iter().enumerate() {
            if v.is_valid(row) && taken(opt_filter, row) {
                self.sums[g] = Some(self.sums[g].unwrap_or(0) + i128::from(v.value(row)));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        let out: Int64Array = sums.into_iter().map(total).collect::<Result<_>>()?;
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![state_array(emit_to.take_needed(&mut self.sums))?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let v = values[0].as_primitive::<Decimal128Type>();
        for (row, &g) in group_indices.iter().enumerate() {
            if v.is_valid(row) {
                self.sums[g] = Some(self.sums[g].unwrap_or(0) + v.value(row));
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let v = as_i64(&values[0])?;
        let v = v.as_primitive::<Int64Type>();
        let sums = (0..v.len()).map(|row| {
            (v.is_valid(row) && taken(opt_filter, row)).then(|| i128::from(v.value(row)))
        });
        Ok(vec![state_array(sums)?])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<Option<i128>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sum_past_bigint_is_an_error_and_one_within_it_is_exact() {
        let big: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 1, -2]));
        let mut s = IntSum::default();
        s.update_batch(std::slice::from_ref(&big)).unwrap();
        assert_eq!(
            s.evaluate().unwrap(),
            ScalarValue::Int64(Some(i64::MAX - 1))
        );
        let mut g = IntSums::default();
        let over: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 1, 5]));
        g.update_batch(&[over], &[0, 0, 1], None, 2).unwrap();
        let e = g.evaluate(EmitTo::All).unwrap_err().to_string();
        assert!(e.contains("integer overflow"), "{e}");
        assert!(!e.contains(&i64::MAX.to_string()), "{e}");
        let mut d = DistinctIntSum::default();
        let twice: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, i64::MAX, -5, -5]));
        d.update_batch(&[twice]).unwrap();
        assert_eq!(
            d.evaluate().unwrap(),
            ScalarValue::Int64(Some(i64::MAX - 5))
        );
        let more: ArrayRef = Arc::new(Int64Array::from(vec![6]));
        d.update_batch(&[more]).unwrap();
        assert!(d.evaluate().is_err());
    }
}
