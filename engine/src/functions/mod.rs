//! The ADQL functions DataFusion does not have: geometry (POINT, CIRCLE,
//! CONTAINS, DISTANCE ...), exact sums and averages, and the kernels under them.

pub(crate) mod aggregate;
pub(crate) mod geometry;
pub(crate) mod integer_sum;
#[doc(hidden)]
pub mod kernels;
pub(crate) mod udf;
