//! LIKE patterns made by an expression (a column, `COALESCE('...')`, `CASE`)
//! are held to the limits a written pattern is checked against before the
//! query runs ([`adql::like_pattern_fits`]): matching costs the pattern's
//! length on every character of the text, and `COALESCE('%a%a...')` with
//! 8 000 wildcards took 9.5 s a row, past every limit, where the same text
//! written as a literal is refused.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// `pattern`, checked as it is evaluated.
pub(crate) fn checked(pattern: Expr) -> Expr {
    let udf = Arc::new(ScalarUDF::new_from_impl(CheckedPattern {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![pattern]))
}

/// Its argument unchanged, or an error where a value is not a pattern ADQL
/// admits; the error names no value (it may be one the caller cannot read).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedPattern {
    signature: Signature,
}

/// What the error of a pattern past the limits says, for [`crate::Error`] to
/// find it under the layers the Parquet reader wraps it in.
pub(crate) const MADE_FROM_DATA: &str = "this one is made by the query from its data";

fn fits(pattern: Option<&str>) -> Result<()> {
    match pattern.map(adql::like_pattern_fits) {
        Some(Err(refusal)) => exec_err!("{refusal}; {MADE_FROM_DATA}"),
        _ => Ok(()),
    }
}

impl ScalarUDFImpl for CheckedPattern {
    fn name(&self) -> &str {
        "checked_like_pattern"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Utf8))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(value) = args.args.into_iter().next() else {
            return exec_err!("checked_like_pattern takes one argument");
        };
        match &value {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s),
            ) => fits(s.as_deref())?,
            ColumnarValue::Scalar(_) => {}
            ColumnarValue::Array(a) => {
                if let Some(text) = a.as_string_opt::<i32>() {
                    text.iter().try_for_each(fits)?;
                } else if let Some(text) = a.as_string_opt::<i64>() {
                    text.iter().try_for_each(fits)?;
                } else if let Some(text) = a.as_string_view_opt() {
                    text.iter().try_for_each(fits)?;
                } else if a.null_count() < a.len() {
                    return exec_err!("a LIKE pattern must be text");
                }
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_past_the_limits_fail_without_showing_themselves() {
        let f = CheckedPattern {
            signature: Signature::any(1, Volatility::Immutable),
        };
        let run = |values: Vec<Option<&str>>| {
            let array: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(values));
            f.invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(array)],
                arg_fields: vec![Arc::new(arrow::datatypes::Field::new(
                    "p",
                    DataType::Utf8,
                    true,
                ))],
                number_rows: 2,
                return_field: Arc::new(arrow::datatypes::Field::new("p", DataType::Utf8, true)),
                config_options: Arc::new(Default::default()),
            })
        };
        assert!(run(vec![Some("NGC%"), None]).is_ok());
        let long = "%a".repeat(100);
        let e = run(vec![Some("NGC%"), Some(&long)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 256 characters and 16 wildcards"), "{e}");
        assert!(!e.contains("%a%a"), "the pattern is not shown: {e}");
    }
}
