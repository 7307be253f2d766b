//! Checksums of query results, stable across processes, machines and versions.
//!
//! Each row is encoded canonically (a tag per value, integers and floats by
//! their exact bits, strings with their length, lists element by element) and
//! hashed with XXH3-128, a published algorithm that does not change between
//! releases. An ordered result chains the row hashes; an unordered one adds
//! them (mod 2^128), so that the engine need not sort a result just to check
//! it. Floats count by their bits, so a value that differs in the last place
//! is a different answer.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// A running checksum over the rows of a result.
pub struct Checksum {
    ordered: bool,
    rows: u64,
    chain: Xxh3,
    sum: u128,
    buf: Vec<u8>,
}

impl Checksum {
    /// A checksum that follows row order (`ordered`) or ignores it.
    pub fn new(ordered: bool) -> Checksum {
        Checksum {
            ordered,
            rows: 0,
            chain: Xxh3::new(),
            sum: 0,
            buf: Vec::with_capacity(256),
        }
    }

    /// Adds the rows of one batch.
    pub fn update(&mut self, batch: &RecordBatch) {
        let columns = batch.columns();
        for row in 0..batch.num_rows() {
            self.buf.clear();
            for c in columns {
                encode(c.as_ref(), row, &mut self.buf);
            }
            let h = xxh3_128(&self.buf);
            if self.ordered {
                self.chain.update(&h.to_le_bytes());
            } else {
                self.sum = self.sum.wrapping_add(h);
            }
        }
        self.rows += batch.num_rows() as u64;
    }

    /// The checksum as text: `ordered:` or `unordered:`, then 32 hex digits.
    pub fn finish(&self) -> String {
        if self.ordered {
            format!("ordered:{:032x}", self.chain.digest128())
        } else {
            // The count goes in too: a multiset hash of zero rows is zero whatever the columns.
            let h =
                xxh3_128(&[self.sum.to_le_bytes(), u128::from(self.rows).to_le_bytes()].concat());
            format!("unordered:{h:032x}")
        }
    }
}

fn encode(a: &dyn Array, i: usize, out: &mut Vec<u8>) {
    if a.is_null(i) {
        out.push(0);
        return;
    }
    out.push(1);
    macro_rules! prim {
        ($t:ty) => {
            out.extend_from_slice(&a.as_primitive::<$t>().value(i).to_le_bytes())
        };
    }
    match a.data_type() {
        DataType::Boolean => out.push(u8::from(a.as_boolean().value(i))),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float16 => prim!(Float16Type),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => prim!(Float64Type),
        DataType::Date32 => prim!(Date32Type),
        DataType::Date64 => prim!(Date64Type),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType),
        DataType::Utf8 => bytes(a.as_string::<i32>().value(i).as_bytes(), out),
        DataType::LargeUtf8 => bytes(a.as_string::<i64>().value(i).as_bytes(), out),
        DataType::Utf8View => bytes(a.as_string_view().value(i).as_bytes(), out),
        DataType::Binary => bytes(a.as_binary::<i32>().value(i), out),
        DataType::LargeBinary => bytes(a.as_binary::<i64>().value(i), out),
        DataType::BinaryView => bytes(a.as_binary_view().value(i), out),
        DataType::List(_) => list(&a.as_list::<i32>().value(i), out),
        DataType::LargeList(_) => list(&a.as_list::<i64>().value(i), out),
        DataType::FixedSizeList(..) => list(&a.as_fixed_size_list().value(i), out),
        _ => {
            // Rare types: their text form, which Arrow keeps stable.
            let text = ArrayFormatter::try_new(a, &FormatOptions::default())
                .map(|f| f.value(i).to_string())
                .unwrap_or_default();
            bytes(text.as_bytes(), out);
        }
    }
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn list(values: &ArrayRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for j in 0..values.len() {
        encode(values.as_ref(), j, out);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(ids: &[i64], names: &[Option<&str>], x: &[f64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("x", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Float64Array::from(x.to_vec())),
            ],
        )
        .unwrap()
    }

    fn sum(ordered: bool, batches: &[RecordBatch]) -> String {
        let mut c = Checksum::new(ordered);
        for b in batches {
            c.update(b);
        }
        c.finish()
    }

    #[test]
    fn unordered_ignores_order_and_batching_ordered_does_not() {
        let a = batch(&[1, 2, 3], &[Some("a"), None, Some("c")], &[0.5, 1.5, 2.5]);
        let b1 = batch(&[3], &[Some("c")], &[2.5]);
        let b2 = batch(&[2, 1], &[None, Some("a")], &[1.5, 0.5]);
        assert_eq!(
            sum(false, std::slice::from_ref(&a)),
            sum(false, &[b1.clone(), b2.clone()])
        );
        assert_ne!(sum(true, std::slice::from_ref(&a)), sum(true, &[b1, b2]));
        assert_eq!(sum(true, &[a.slice(0, 1), a.slice(1, 2)]), sum(true, &[a]));
    }

    #[test]
    fn every_bit_counts() {
        let a = batch(&[1], &[Some("a")], &[0.1 + 0.2]);
        let b = batch(&[1], &[Some("a")], &[0.3]);
        assert_ne!(sum(false, &[a]), sum(false, &[b]));
        // A null is not an empty string, and the row count matters.
        let n = batch(&[1], &[None], &[1.0]);
        let e = batch(&[1], &[Some("")], &[1.0]);
        assert_ne!(sum(false, std::slice::from_ref(&n)), sum(false, &[e]));
        assert_ne!(
            sum(false, std::slice::from_ref(&n)),
            sum(false, &[n.clone(), n.clone()])
        );
        assert_ne!(sum(false, &[]), sum(true, &[]));
    }

    #[test]
    fn the_value_is_fixed_by_the_algorithm() {
        // Guards against an accidental change of encoding: tokens recorded today must
        // verify years from now.
        let a = batch(&[42], &[Some("x")], &[1.0]);
        assert_eq!(
            sum(true, std::slice::from_ref(&a)),
            "ordered:a132671c3247c58c1694f6a68e044d6d"
        );
        assert_eq!(
            sum(false, &[a]),
            "unordered:b11fd6e64397c64769825264cb1ef737"
        );
    }
}
