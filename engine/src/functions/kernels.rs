//! The engine's hot kernels, reachable from the criterion micro-benchmarks
//! (`benches/kernels.rs`). Not an API: each function calls the code a query
//! runs, so the benchmark measures that code and nothing written for it.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::Field;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
use datafusion::physical_expr::create_physical_expr;

use crate::error::{Error, Result};

/// Evaluates one of the ADQL geometry functions (by its rewritten name, see
/// `adql::udf`) over whole columns, as a query's projection or filter does.
/// A one-row argument beside longer ones is a constant, as a literal in a
/// query is (DataFusion passes it as a scalar).
pub fn geometry(name: &str, args: &[ArrayRef]) -> Result<ArrayRef> {
    let udf = crate::functions::udf::all()
        .into_iter()
        .find(|u| u.name() == name)
        .ok_or_else(|| {
            Error::DataFusion(DataFusionError::Plan(format!(
                "no geometry function named {name}"
            )))
        })?;
    let types: Vec<_> = args.iter().map(|a| a.data_type().clone()).collect();
    let out = udf.return_type(&types)?;
    let rows = args.iter().map(|a| a.len()).max().unwrap_or(1);
    let values = args
        .iter()
        .map(|a| {
            Ok(if a.len() == 1 && rows > 1 {
                ColumnarValue::Scalar(ScalarValue::try_from_array(a, 0)?)
            } else {
                ColumnarValue::Array(a.clone())
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let value = udf.invoke_with_args(ScalarFunctionArgs {
        args: values,
        arg_fields: args
            .iter()
            .enumerate()
            .map(|(i, a)| Arc::new(Field::new(format!("a{i}"), a.data_type().clone(), true)))
            .collect(),
        number_rows: rows,
        return_field: Arc::new(Field::new(name, out, true)),
        config_options: Arc::new(ConfigOptions::default()),
    })?;
    Ok(value.into_array(rows)?)
}

/// Which rows of `batch` (which has `_added` and `_retired`) snapshot `k` sees:
/// the rule the table provider pushes into the Parquet reader.
pub fn visible(batch: &RecordBatch, k: i64) -> Result<BooleanArray> {
    let schema = DFSchema::try_from(batch.schema().as_ref().clone())?;
    let rule = create_physical_expr(
        &crate::scan::provider::visibility_rule(k),
        &schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?;
    let mask = rule.evaluate(batch)?.into_array(batch.num_rows())?;
    Ok(arrow::array::AsArray::as_boolean(&mask).clone())
}

/// The Parquet row selection that skips a file's `hidden` positions; returns
/// how many rows it selects.
pub fn skip_hidden(hidden: &[u32], rows: u64) -> usize {
    crate::scan::provider::skip_positions(hidden, rows).row_count()
}
