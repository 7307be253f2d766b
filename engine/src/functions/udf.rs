//! ADQL's geometry and the UDF catalogue as DataFusion scalar functions.
//!
//! The `adql` crate rewrites ADQL calls into these names (see [`adql::udf`]).
//! Geometry values travel as DALI arrays (`List<Float64>`); the cone and
//! distance forms take plain coordinates so that the hot path builds no lists.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int32Array, Int64Array, ListArray,
    ListBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::functions::geometry::{self, Shape};

/// Every function the rewritten ADQL may call beyond DataFusion's own.
pub fn all() -> Vec<ScalarUDF> {
    use adql::udf as n;
    let f64s = |k: usize| Signature::exact(vec![DataType::Float64; k], Volatility::Immutable);
    let geo = |k: usize| Signature::any(k, Volatility::Immutable);
    [
        Geo::new(n::POINT, f64s(2), Out::Shape, Kind::Point),
        Geo::new(n::CIRCLE, f64s(3), Out::Shape, Kind::Circle),
        Geo::new(n::BOX, f64s(4), Out::Shape, Kind::Box),
        Geo::new(
            n::POLYGON,
            Signature::variadic(vec![DataType::Float64], Volatility::Immutable),
            Out::Shape,
            Kind::Polygon,
        ),
        Geo::new(n::CONE, f64s(5), Out::Flag, Kind::Cone),
        Geo::new(n::DISTANCE, f64s(4), Out::Number, Kind::Distance),
        Geo::new(n::CONTAINS, geo(2), Out::Flag, Kind::Contains),
        Geo::new(n::INTERSECTS, geo(2), Out::Flag, Kind::Intersects),
        Geo::new(n::AREA, geo(1), Out::Number, Kind::Area),
        Geo::new(n::CENTROID, geo(1), Out::Shape, Kind::Centroid),
        Geo::new(n::COORD1, geo(1), Out::Number, Kind::Coord1),
        Geo::new(n::COORD2, geo(1), Out::Number, Kind::Coord2),
        Geo::new(
            n::HEALPIX_INDEX,
            Signature::exact(
                vec![DataType::Int64, DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
            Out::Index,
            Kind::HealpixIndex,
        ),
        Geo::new(
            n::HEALPIX_CENTER,
            Signature::exact(
                vec![DataType::Int64, DataType::Int64],
                Volatility::Immutable,
            ),
            Out::Shape,
            Kind::HealpixCenter,
        ),
    ]
    .into_iter()
    .map(ScalarUDF::new_from_impl)
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Out {
    Shape,
    Flag,
    Number,
    Index,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Point,
    Circle,
    Box,
    Polygon,
    Cone,
    Distance,
    Contains,
    Intersects,
    Area,
    Centroid,
    Coord1,
    Coord2,
    HealpixIndex,
    HealpixCenter,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Geo {
    name: &'static str,
    signature: Signature,
    out: Out,
    kind: Kind,
}

impl Geo {
    fn new(name: &'static str, signature: Signature, out: Out, kind: Kind) -> Geo {
        Geo {
            name,
            signature,
            out,
            kind,
        }
    }
}

/// STC-S regions (text) as DALI arrays; a NULL stays NULL.
fn stcs_shapes(a: &ArrayRef) -> Result<ArrayRef> {
    let text = arrow::compute::cast(a, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut b = ListBuilder::new(Float64Builder::new());
    for row in text.iter() {
        match row {
            Some(t) => {
                let values =
                    geometry::Shape::stcs_values(t).map_err(|e| DataFusionError::Execution(e.0))?;
                b.values().append_slice(&values);
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Ok(Arc::new(b.finish()))
}

fn shape_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// One row's value of an argument, read as numbers or as a geometry.
enum Arg<'a> {
    Numbers(&'a Float64Array),
    Ints(&'a Int64Array),
    Shapes(&'a ListArray),
}

impl Arg<'_> {
    fn f64(&self, row: usize) -> Option<f64> {
        match self {
            Arg::Numbers(a) => a.is_valid(row).then(|| a.value(row)),
            Arg::Ints(a) => a.is_valid(row).then(|| a.value(row) as f64),
            Arg::Shapes(_) => None,
        }
    }

    fn i64(&self, row: usize) -> Option<i64> {
        match self {
            Arg::Ints(a) => a.is_valid(row).then(|| a.value(row)),
            _ => None,
        }
    }

    fn shape(&self, row: usize) -> Result<Option<Shape>> {
        let Arg::Shapes(a) = self else {
            return exec_err!("a geometry argument was expected");
        };
        if a.is_null(row) {
            return Ok(None);
        }
        let values = a.value(row);
        let v = values.as_primitive::<Float64Type>();
        if v.null_count() > 0 {
            return Ok(None);
        }
        Shape::from_values(v.values())
            .map(Some)
            .map_err(|e| DataFusionError::Execution(e.0))
    }
}

impl ScalarUDFImpl for Geo {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.out {
            Out::Shape => shape_type(),
            Out::Flag => DataType::Int32,
            Out::Number => DataType::Float64,
            Out::Index => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if let Some(out) = self.about_fixed_point(&args.args, rows)? {
            return Ok(ColumnarValue::Array(out));
        }
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut casted: Vec<ArrayRef> = Vec::with_capacity(arrays.len());
        let takes_shapes = matches!(
            self.kind,
            Kind::Contains
                | Kind::Intersects
                | Kind::Area
                | Kind::Centroid
                | Kind::Coord1
                | Kind::Coord2
        );
        for a in arrays {
            casted.push(match a.data_type() {
                DataType::List(_) | DataType::Int64 => a,
                // A region as STC-S text (ObsCore's `s_region`).
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if takes_shapes => {
                    stcs_shapes(&a)?
                }
                DataType::Null if takes_shapes => {
                    arrow::array::new_null_array(&shape_type(), a.len())
                }
                _ => arrow::compute::cast(&a, &DataType::Float64)?,
            });
        }
        let argv: Vec<Arg> = casted
            .iter()
            .map(|a| match a.data_type() {
                DataType::List(_) => Arg::Shapes(a.as_list::<i32>()),
                DataType::Int64 => Arg::Ints(a.as_primitive::<Int64Type>()),
                _ => Arg::Numbers(a.as_primitive::<Float64Type>()),
            })
            .collect();
        let n = if scalar { 1 } else { rows };
        let out: ArrayRef = match self.out {
            Out::Flag => {
                let mut v = Vec::with_capacity(n);
                for r in 0..n {
                    v.push(self.flag(&argv, r)?);
                }
                Arc::new(Int32Array::from(v))
            }
            Out::Number => {
                let mut b = Float64Builder::with_capacity(n);
                for r in 0..n {
                    b.append_option(self.number(&argv, r)?);
                }
                Arc::new(b.finish())
            }
            Out::Index => {
                let mut v = Vec::with_capacity(n);
                for r in 0..n {
                    v.push(self.index(&argv, r)?);
                }
                Arc::new(Int64Array::from(v))
            }
            Out::Shape => {
                let mut b = ListBuilder::new(Float64Builder::new());
                for r in 0..n {
                    match self.shape(&argv, r)? {
                        Some(values) => {
                            b.values().append_slice(&values);
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        };
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

impl Geo {
    /// A cone or distance from a column of positions to one constant position
    /// (the shape of nearly every cone query): the constant's vector is
    /// computed once, not per row. The arithmetic per row is that of
    /// [`geometry::distance`], so the answers are the same to the bit.
    fn about_fixed_point(&self, args: &[ColumnarValue], rows: usize) -> Result<Option<ArrayRef>> {
        let constants = match self.kind {
            Kind::Cone => 3,
            Kind::Distance => 2,
            _ => return Ok(None),
        };
        let (ColumnarValue::Array(ra), ColumnarValue::Array(dec)) = (&args[0], &args[1]) else {
            return Ok(None);
        };
        let mut fixed = Vec::with_capacity(constants);
        for a in &args[2..] {
            let ColumnarValue::Scalar(v) = a else {
                return Ok(None);
            };
            // A NULL constant (or one not a number) takes the general path.
            match v.cast_to(&DataType::Float64)? {
                datafusion::common::ScalarValue::Float64(Some(x)) => fixed.push(x),
                _ => return Ok(None),
            }
        }
        let ra = arrow::compute::cast(ra, &DataType::Float64)?;
        let dec = arrow::compute::cast(dec, &DataType::Float64)?;
        let (ra, dec) = (
            ra.as_primitive::<Float64Type>(),
            dec.as_primitive::<Float64Type>(),
        );
        let centre = geometry::vector(fixed[0], fixed[1]);
        let at = |r: usize| {
            (ra.is_valid(r) && dec.is_valid(r)).then(|| {
                geometry::distance_from(geometry::vector(ra.value(r), dec.value(r)), centre)
            })
        };
        Ok(Some(match self.kind {
            Kind::Cone => {
                let radius = fixed[2];
                Arc::new(
                    (0..rows)
                        .map(|r| at(r).map(|d| i32::from(d <= radius)))
                        .collect::<Int32Array>(),
                )
            }
            _ => Arc::new((0..rows).map(at).collect::<Float64Array>()),
        }))
    }

    fn flag(&self, a: &[Arg], r: usize) -> Result<Option<i32>> {
        Ok(match self.kind {
            Kind::Cone => {
                let (Some(ra), Some(dec), Some(ra0), Some(dec0), Some(rad)) = (
                    a[0].f64(r),
                    a[1].f64(r),
                    a[2].f64(r),
                    a[3].f64(r),
                    a[4].f64(r),
                ) else {
                    return Ok(None);
                };
                Some(i32::from(geometry::distance(ra, dec, ra0, dec0) <= rad))
            }
            Kind::Contains | Kind::Intersects => {
                let (Some(x), Some(y)) = (a[0].shape(r)?, a[1].shape(r)?) else {
                    return Ok(None);
                };
                let yes = if self.kind == Kind::Contains {
                    x.within(&y)
                } else {
                    x.intersects(&y)
                };
                Some(i32::from(yes))
            }
            _ => None,
        })
    }

    fn number(&self, a: &[Arg], r: usize) -> Result<Option<f64>> {
        Ok(match self.kind {
            Kind::Distance => match (a[0].f64(r), a[1].f64(r), a[2].f64(r), a[3].f64(r)) {
                (Some(w), Some(x), Some(y), Some(z)) => Some(geometry::distance(w, x, y, z)),
                _ => None,
            },
            Kind::Area => a[0].shape(r)?.map(|s| s.area()),
            Kind::Coord1 | Kind::Coord2 => a[0].shape(r)?.and_then(|s| match s {
                Shape::Point(p) => {
                    let (ra, dec) = geometry::position(p);
                    Some(if self.kind == Kind::Coord1 { ra } else { dec })
                }
                _ => None,
            }),
            _ => None,
        })
    }

    fn index(&self, a: &[Arg], r: usize) -> Result<Option<i64>> {
        let (Some(order), Some(ra), Some(dec)) = (a[0].i64(r), a[1].f64(r), a[2].f64(r)) else {
            return Ok(None);
        };
        if !(0..=29).contains(&order) {
            return exec_err!("ivo_healpix_index: order {order} is outside 0..29");
        }
        if !(-90.0..=90.0).contains(&dec) {
            return exec_err!("ivo_healpix_index: declination {dec} is outside [-90, 90]");
        }
        if !ra.is_finite() {
            return exec_err!("ivo_healpix_index: right ascension {ra} is not a number");
        }
        let lon = catalog::healpix::longitude(ra);
        Ok(Some(
            cdshealpix::nested::hash(order as u8, lon, dec.to_radians()) as i64,
        ))
    }

    fn shape(&self, a: &[Arg], r: usize) -> Result<Option<Vec<f64>>> {
        let nums = |k: usize| -> Option<Vec<f64>> { (0..k).map(|i| a[i].f64(r)).collect() };
        let v = match self.kind {
            Kind::Point => nums(2).map(|v| {
                (v[1].abs() <= 90.0)
                    .then(|| vec![v[0].rem_euclid(360.0), v[1]])
                    .ok_or_else(|| format!("POINT: declination {} is outside [-90, 90]", v[1]))
            }),
            Kind::Circle => nums(3).map(|v| {
                if v[1].abs() > 90.0 {
                    Err(format!("CIRCLE: declination {} is outside [-90, 90]", v[1]))
                } else if !(0.0..=180.0).contains(&v[2]) {
                    Err(format!("CIRCLE: radius {} is outside [0, 180]", v[2]))
                } else {
                    Ok(vec![v[0].rem_euclid(360.0), v[1], v[2]])
                }
            }),
            Kind::Box => nums(4).map(|v| {
                if v[1].abs() > 90.0
                    || !(0.0..180.0).contains(&v[2])
                    || !(0.0..180.0).contains(&v[3])
                {
                    Err("BOX: centre or size out of range".to_string())
                } else {
                    Ok(geometry::box_corners(v[0], v[1], v[2], v[3]))
                }
            }),
            Kind::Polygon => nums(a.len()).map(|v| {
                Shape::from_values(&v)
                    .map(|_| v)
                    .map_err(|e| format!("POLYGON: {}", e.0))
            }),
            Kind::Centroid => a[0]
                .shape(r)?
                .map(|s| Ok(Shape::Point(s.centroid()).to_values())),
            Kind::HealpixCenter => match (a[0].i64(r), a[1].i64(r)) {
                (Some(order), Some(index)) => Some(
                    if (0..=29).contains(&order)
                        && index >= 0
                        && (index as u64) < 12 * (1u64 << (2 * order))
                    {
                        let (lon, lat) = cdshealpix::nested::center(order as u8, index as u64);
                        Ok(vec![lon.to_degrees(), lat.to_degrees()])
                    } else {
                        Err(format!(
                            "ivo_healpix_center: no cell {index} at order {order}"
                        ))
                    },
                ),
                _ => None,
            },
            _ => None,
        };
        v.transpose().map_err(DataFusionError::Execution)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, Float64Array};

    use crate::functions::kernels::geometry;

    fn column(v: Vec<Option<f64>>) -> ArrayRef {
        Arc::new(Float64Array::from(v))
    }

    #[test]
    fn a_constant_centre_gives_the_same_answers_to_the_bit_as_a_column_of_it() {
        use adql::udf as n;
        // Positions around the centre, on the circle's edge, at the poles, and NULL.
        let mut ra = vec![
            Some(10.0),
            Some(10.5),
            None,
            Some(370.0),
            Some(0.0),
            Some(190.0),
        ];
        let mut dec = vec![
            Some(20.0),
            Some(20.0),
            Some(1.0),
            Some(20.0),
            Some(90.0),
            Some(-20.0),
        ];
        for i in 0..500 {
            let f = f64::from(i);
            ra.push(Some(10.0 + (f * 0.37).sin() * 0.6));
            dec.push(Some(20.0 + (f * 0.23).cos() * 0.6));
        }
        let rows = ra.len();
        let (ra, dec) = (column(ra), column(dec));
        let one = |v: f64| column(vec![Some(v)]);
        let all = |v: f64| column(vec![Some(v); rows]);
        for (name, constants) in [
            (n::CONE, vec![10.0, 20.0, 0.5]),
            (n::DISTANCE, vec![10.0, 20.0]),
        ] {
            let mut fixed = vec![ra.clone(), dec.clone()];
            fixed.extend(constants.iter().map(|v| one(*v)));
            let mut general = vec![ra.clone(), dec.clone()];
            general.extend(constants.iter().map(|v| all(*v)));
            let a = geometry(name, &fixed).expect("constant centre");
            let b = geometry(name, &general).expect("column centre");
            assert_eq!(a.len(), rows);
            assert_eq!(a.null_count(), 1, "{name}: the NULL position gives NULL");
            assert_eq!(&a, &b, "{name}");
        }
    }
}
