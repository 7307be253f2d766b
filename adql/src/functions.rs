//! The functions a query may call: ADQL 2.1's, the geometry, and the UDF catalogue.

/// Names of the functions the rewritten query calls that are not DataFusion built-ins.
/// The engine registers each; users cannot call them by these names.
pub mod udf {
    /// `adql_point(ra, dec)`: a point, as a DALI `double[2]`.
    pub const POINT: &str = "adql_point";
    /// `adql_circle(ra, dec, radius)`: a circle, as a DALI `double[3]`.
    pub const CIRCLE: &str = "adql_circle";
    /// `adql_box(ra, dec, width, height)`: a box, as the polygon of its four corners.
    pub const BOX: &str = "adql_box";
    /// `adql_polygon(ra1, dec1, ra2, dec2, ...)`: a polygon, as a DALI `double[2n]`.
    pub const POLYGON: &str = "adql_polygon";
    /// `adql_cone(ra, dec, ra0, dec0, radius)`: 1 if the point lies in the circle, else 0.
    pub const CONE: &str = "adql_cone";
    /// `adql_distance(ra1, dec1, ra2, dec2)`: great-circle distance in degrees.
    pub const DISTANCE: &str = "adql_distance";
    /// `adql_contains(g1, g2)`: 1 if geometry g1 lies within g2.
    pub const CONTAINS: &str = "adql_contains";
    /// `adql_intersects(g1, g2)`: 1 if the geometries overlap.
    pub const INTERSECTS: &str = "adql_intersects";
    /// `adql_area(g)`: area in square degrees.
    pub const AREA: &str = "adql_area";
    /// `adql_centroid(g)`: the centroid, as a point.
    pub const CENTROID: &str = "adql_centroid";
    /// `adql_coord1(p)`: the longitude of a point.
    pub const COORD1: &str = "adql_coord1";
    /// `adql_coord2(p)`: the latitude of a point.
    pub const COORD2: &str = "adql_coord2";
    /// `ivo_healpix_index(order, ra, dec)`: nested HEALPix index.
    pub const HEALPIX_INDEX: &str = "ivo_healpix_index";
    /// `ivo_healpix_center(order, index)`: the centre of a HEALPix cell, as a point.
    pub const HEALPIX_CENTER: &str = "ivo_healpix_center";
}

/// One function a query may call, for the service's capabilities.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDoc {
    /// The ADQL name.
    pub name: &'static str,
    /// Its signature in TAPRegExt form.
    pub signature: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Whether it is a user-defined function (TAPRegExt `udf`) rather than ADQL's own.
    pub udf: bool,
}

const fn f(name: &'static str, signature: &'static str, description: &'static str) -> FunctionDoc {
    FunctionDoc {
        name,
        signature,
        description,
        udf: false,
    }
}

/// Every function a query may call.
pub const FUNCTIONS: &[FunctionDoc] = &[
    f("ABS", "ABS(x)", "absolute value"),
    f("CEILING", "CEILING(x)", "smallest integer not less than x"),
    f("DEGREES", "DEGREES(x)", "radians to degrees"),
    f("EXP", "EXP(x)", "e raised to x"),
    f("FLOOR", "FLOOR(x)", "largest integer not greater than x"),
    f("LOG", "LOG(x)", "natural logarithm"),
    f("LOG10", "LOG10(x)", "base-10 logarithm"),
    f("MOD", "MOD(x, y)", "remainder of x divided by y"),
    f("PI", "PI()", "the constant pi"),
    f("POWER", "POWER(x, y)", "x raised to y"),
    f("RADIANS", "RADIANS(x)", "degrees to radians"),
    f("RAND", "RAND()", "a random number in [0, 1)"),
    f("ROUND", "ROUND(x [, n])", "x rounded to n decimal places"),
    f("SQRT", "SQRT(x)", "square root"),
    f(
        "TRUNCATE",
        "TRUNCATE(x [, n])",
        "x truncated to n decimal places",
    ),
    f("ACOS", "ACOS(x)", "arc cosine, radians"),
    f("ASIN", "ASIN(x)", "arc sine, radians"),
    f("ATAN", "ATAN(x)", "arc tangent, radians"),
    f("ATAN2", "ATAN2(y, x)", "arc tangent of y/x, radians"),
    f("COS", "COS(x)", "cosine of x radians"),
    f("COT", "COT(x)", "cotangent of x radians"),
    f("SIN", "SIN(x)", "sine of x radians"),
    f("TAN", "TAN(x)", "tangent of x radians"),
    f("LOWER", "LOWER(s)", "lower-case string"),
    f("UPPER", "UPPER(s)", "upper-case string"),
    f("COALESCE", "COALESCE(x, ...)", "first non-NULL argument"),
    f(
        "IN_UNIT",
        "IN_UNIT(column, 'unit')",
        "a column's value converted to another unit",
    ),
    f("COUNT", "COUNT(x)", "number of rows"),
    f("AVG", "AVG(x)", "mean"),
    f("MIN", "MIN(x)", "minimum"),
    f("MAX", "MAX(x)", "maximum"),
    f("SUM", "SUM(x)", "sum"),
    f("POINT", "POINT(['ICRS',] ra, dec)", "a position on the sky"),
    f(
        "CIRCLE",
        "CIRCLE(['ICRS',] ra, dec, radius)",
        "a circle, radius in degrees",
    ),
    f(
        "BOX",
        "BOX(['ICRS',] ra, dec, width, height)",
        "a box with great-circle sides",
    ),
    f(
        "POLYGON",
        "POLYGON(['ICRS',] ra1, dec1, ra2, dec2, ra3, dec3, ...)",
        "a polygon with great-circle sides",
    ),
    f(
        "CONTAINS",
        "CONTAINS(g1, g2)",
        "1 if g1 lies within g2, else 0",
    ),
    f(
        "INTERSECTS",
        "INTERSECTS(g1, g2)",
        "1 if g1 and g2 overlap, else 0",
    ),
    f(
        "DISTANCE",
        "DISTANCE(p1, p2) or DISTANCE(ra1, dec1, ra2, dec2)",
        "great-circle distance in degrees",
    ),
    f("AREA", "AREA(g)", "area in square degrees"),
    f("CENTROID", "CENTROID(g)", "centroid of a geometry"),
    f("COORD1", "COORD1(p)", "longitude of a point, degrees"),
    f("COORD2", "COORD2(p)", "latitude of a point, degrees"),
    f(
        "COORDSYS",
        "COORDSYS(g)",
        "coordinate system of a geometry (always ICRS)",
    ),
    FunctionDoc {
        name: "ivo_healpix_index",
        signature: "ivo_healpix_index(order INTEGER, ra DOUBLE, dec DOUBLE) -> BIGINT",
        description: "index of the nested HEALPix cell of the given order containing the position",
        udf: true,
    },
    FunctionDoc {
        name: "ivo_healpix_center",
        signature: "ivo_healpix_center(order INTEGER, index BIGINT) -> POINT",
        description: "centre of the nested HEALPix cell of the given order and index",
        udf: true,
    },
];

/// The factor that converts a value in `from` to `to`, when both are units of one quantity we know.
pub(crate) fn unit_factor(from: &str, to: &str) -> Option<f64> {
    fn base(u: &str) -> Option<(&'static str, f64)> {
        Some(match u.trim() {
            "deg" => ("angle", 1.0),
            "arcmin" => ("angle", 1.0 / 60.0),
            "arcsec" => ("angle", 1.0 / 3600.0),
            "mas" => ("angle", 1.0 / 3_600_000.0),
            "rad" => ("angle", 180.0 / std::f64::consts::PI),
            "Jy" => ("flux", 1.0),
            "mJy" => ("flux", 1e-3),
            "uJy" => ("flux", 1e-6),
            "nJy" => ("flux", 1e-9),
            "d" => ("time", 86400.0),
            "h" => ("time", 3600.0),
            "min" => ("time", 60.0),
            "s" => ("time", 1.0),
            "ms" => ("time", 1e-3),
            "yr" | "a" => ("time", 365.25 * 86400.0),
            "m" => ("length", 1.0),
            "km" => ("length", 1e3),
            "AU" | "au" => ("length", 1.495_978_707e11),
            "pix" => ("pixel", 1.0),
            _ => return None,
        })
    }
    let (qf, ff) = base(from)?;
    let (qt, ft) = base(to)?;
    (qf == qt).then(|| ff / ft)
}

/// Closest names to `wanted` (edit distance), for "did you mean" hints.
pub(crate) fn nearest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let w = wanted.to_lowercase();
    let w_len = w.chars().count();
    let close = |d: usize, n_len: usize| d <= (n_len.max(w_len) / 2).max(2);
    let mut scored: Vec<(usize, &str)> = names
        // The distance is at least the difference in length: names that cannot
        // be close are skipped before the quadratic comparison (a megabyte-long
        // identifier against every column took seconds of a request thread).
        .filter(|n| close(n.chars().count().abs_diff(w_len), n.chars().count()))
        .map(|n| (levenshtein(&w, &n.to_lowercase()), n))
        .filter(|(d, n)| close(*d, n.chars().count()))
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_too_long_to_be_close_cost_nothing_and_near_ones_are_found() {
        let names = ["diaObjectId", "ra", "dec", "psfFlux"];
        assert_eq!(
            nearest("diaObjectID", names.into_iter()),
            vec!["diaObjectId"]
        );
        // Without the length filter this alone took seconds (400 × 2^20 × 11 steps).
        let long = "a".repeat(1 << 20);
        assert!(nearest(&long, names.iter().copied().cycle().take(400)).is_empty());
    }

    #[test]
    fn units_convert_within_a_quantity_only() {
        assert_eq!(unit_factor("deg", "arcsec"), Some(3600.0));
        assert_eq!(unit_factor("nJy", "mJy"), Some(1e-6));
        assert_eq!(unit_factor("d", "h"), Some(24.0));
        assert_eq!(unit_factor("deg", "nJy"), None);
        assert_eq!(unit_factor("furlong", "m"), None);
    }

    #[test]
    fn nearest_names_rank_by_edit_distance() {
        let names = ["diaObjectId", "diaSourceId", "ra", "dec"];
        assert_eq!(nearest("diaobjid", names.into_iter())[0], "diaObjectId");
        assert!(nearest("zzzzzzzz", names.into_iter()).is_empty());
    }
}
