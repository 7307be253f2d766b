//! Integer arithmetic that fails on overflow instead of wrapping.
//!
//! DataFusion plans `+`, `-` and `*` on integers with wrapping kernels, so
//! `9223372036854775807 + 1` answered `-9223372036854775808` and a product
//! of two large ids came out as a plausible wrong number. ADQL (like SQL)
//! says an overflow is an error, as unary minus and `ABS` already report.
//! An analyzer rule, after type coercion, turns integer `+`, `-` and `*` into
//! functions that call arrow's checked kernels; names of output columns stay
//! what the user's expression made them. Text `||` is bounded the same way:
//! a value may not grow past [`MAX_TEXT`], since doubling a text a few dozen
//! times would fill any memory; and a LIKE pattern an expression makes is
//! checked as it runs (see [`crate::plan::like_pattern`]).

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; it must run after DataFusion's type coercion, when both
/// operands of an operator have one type.
#[derive(Debug, Default)]
pub(crate) struct CheckedIntegers;

impl AnalyzerRule for CheckedIntegers {
    fn name(&self) -> &str {
        "checked_integers"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = merge_schema(&node.inputs());
            if let LogicalPlan::TableScan(scan) = &node {
                schema.merge(&scan.projected_schema);
            }
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|e| checked(e, &schema))
                    .map(|t| t.update_data(|e| name.restore(e)))
            })?
            .map_data(|p| p.recompute_schema())
        })
        .map(|t| t.data)
    }
}

fn checked(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    // `-x` is `0 - x`: the negation of the smallest BIGINT overflows too.
    if let Expr::Negative(inner) = &e
        && let Ok(t) = inner.get_type(schema)
        && t.is_integer()
    {
        let Expr::Negative(inner) = e else {
            return Ok(Transformed::no(e));
        };
        let zero = Expr::Literal(datafusion::common::ScalarValue::new_zero(&t)?, None);
        let udf = Arc::new(ScalarUDF::new_from_impl(Checked::new(Op::Sub)));
        return Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(udf, vec![zero, *inner]),
        )));
    }
    // A LIKE pattern an expression makes is checked as a written one is.
    if let Expr::Like(like) = &e
        && !matches!(*like.pattern, Expr::Literal(..))
    {
        let Expr::Like(mut like) = e else {
            return Ok(Transformed::no(e));
        };
        like.pattern = Box::new(crate::plan::like_pattern::checked(*like.pattern));
        return Ok(Transformed::yes(Expr::Like(like)));
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return Ok(Transformed::no(e));
    };
    let integer = |x: &Expr| x.get_type(schema).is_ok_and(|t| t.is_integer());
    let text = |x: &Expr| {
        x.get_type(schema)
            .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
    };
    let kind = match op {
        Operator::Plus if integer(&left) && integer(&right) => Some(Op::Add),
        Operator::Minus if integer(&left) && integer(&right) => Some(Op::Sub),
        Operator::Multiply if integer(&left) && integer(&right) => Some(Op::Mul),
        Operator::StringConcat if text(&left) && text(&right) => Some(Op::Concat),
        _ => None,
    };
    match kind {
        Some(kind) => {
            let udf = Arc::new(ScalarUDF::new_from_impl(Checked::new(kind)));
            Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(udf, vec![*left, *right]),
            )))
        }
        _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
            left,
            op,
            right,
        }))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Concat,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Concat => "||",
        }
    }
}

/// `a + b`, `a - b` or `a * b` on integers of one type, failing on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Op,
    signature: Signature,
}

impl Checked {
    fn new(op: Op) -> Checked {
        Checked {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "checked_add",
            Op::Sub => "checked_subtract",
            Op::Mul => "checked_multiply",
            Op::Concat => "bounded_concat",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Int64))
    }

    // Null only where an operand is, as for the operator it replaces: the
    // plan's schemas (a UNION's, computed before this rule) say so already.
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        let t = args
            .arg_fields
            .first()
            .map_or(DataType::Int64, |f| f.data_type().clone());
        Ok(Arc::new(arrow::datatypes::Field::new(
            self.name(),
            t,
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::compute::kernels::numeric::{add, mul, sub};
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [l, r] = arrays.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let out = match self.op {
            Op::Add => add(l, r),
            Op::Sub => sub(l, r),
            Op::Mul => mul(l, r),
            Op::Concat => return concat(l, r, scalar),
        };
        // The operands are not quoted: an error must not carry row values.
        let out = match out {
            Ok(a) => a,
            Err(arrow::error::ArrowError::ArithmeticOverflow(_)) => {
                return exec_err!(
                    "integer overflow: the result of {} does not fit in {} (CAST an operand \
                     to DOUBLE PRECISION for an approximate answer)",
                    self.op.symbol(),
                    adql_type(l.data_type())
                );
            }
            Err(e) => return Err(e.into()),
        };
        if scalar {
            let value = datafusion::common::ScalarValue::try_from_array(&out, 0)?;
            return Ok(ColumnarValue::Scalar(value));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// The longest text `||` may make, in bytes. Each value is repeated in every
/// row of a batch, and `s || s` doubles: sixteen levels of it took the server
/// to 930 MB, twenty would have taken it past any machine's memory.
pub(crate) const MAX_TEXT: i64 = adql::MAX_TEXT_VALUE as i64;

/// `l || r` on text, refused before anything is built if a value would be
/// longer than [`MAX_TEXT`].
fn concat(l: &ArrayRef, r: &ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    use arrow::compute::kernels::{concat_elements::concat_elements_dyn, length::length};
    let lengths = |a: &ArrayRef| -> Result<ArrayRef> {
        Ok(arrow::compute::cast(&length(a)?, &DataType::Int64)?)
    };
    let total = arrow::compute::kernels::numeric::add(&lengths(l)?, &lengths(r)?)?;
    let longest = total
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .and_then(arrow::compute::max);
    if longest.is_some_and(|n| n > MAX_TEXT) {
        return exec_err!(
            "a text made with || would be longer than {} KiB",
            MAX_TEXT >> 10
        );
    }
    let out_type = l.data_type().clone();
    let utf8 = |a: &ArrayRef| arrow::compute::cast(a, &DataType::Utf8);
    let joined = concat_elements_dyn(&utf8(l)?, &utf8(r)?)?;
    let out = arrow::compute::cast(&joined, &out_type)?;
    if scalar {
        return Ok(ColumnarValue::Scalar(
            datafusion::common::ScalarValue::try_from_array(&out, 0)?,
        ));
    }
    Ok(ColumnarValue::Array(out))
}

/// The ADQL name of an integer type, for messages.
fn adql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::UInt8 | DataType::Int16 => "SMALLINT",
        DataType::Int32 | DataType::UInt16 => "INTEGER",
        _ => "BIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::Field;

    fn run(op: Op, l: i64, r: i64) -> Result<i64> {
        let f = Checked::new(op);
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::new(Int64Array::from(vec![l]))),
                ColumnarValue::Array(Arc::new(Int64Array::from(vec![r]))),
            ],
            arg_fields: vec![
                Arc::new(Field::new("a", DataType::Int64, true)),
                Arc::new(Field::new("b", DataType::Int64, true)),
            ],
            number_rows: 1,
            return_field: Arc::new(Field::new("r", DataType::Int64, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let out = f.invoke_with_args(args)?.into_array(1)?;
        let out = out
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(0));
        Ok(out.unwrap_or_default())
    }

    #[test]
    fn overflow_is_an_error_that_names_no_value() {
        assert_eq!(run(Op::Add, 2, 3).unwrap(), 5);
        assert_eq!(run(Op::Mul, -4, 3).unwrap(), -12);
        for (op, l, r) in [
            (Op::Add, i64::MAX, 1),
            (Op::Sub, i64::MIN, 1),
            (Op::Mul, 4_000_000_000_000, 4_000_000_000_000),
        ] {
            let e = run(op, l, r).unwrap_err().to_string();
            assert!(e.contains("integer overflow"), "{e}");
            assert!(!e.contains(&l.to_string()), "{e}");
        }
    }
}
