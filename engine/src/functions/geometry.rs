//! Exact spherical geometry for ADQL: points, circles and polygons whose sides
//! are great-circle arcs. Angles are in degrees at the edges, unit vectors inside.
//!
//! A geometry value is a DALI array: a point `[ra, dec]`, a circle
//! `[ra, dec, radius]`, a polygon `[ra1, dec1, ra2, dec2, ...]` (three or more
//! vertices). A polygon is the smaller of the two regions its edges bound, so
//! both vertex orders describe the same region.

use std::f64::consts::PI;

type V = [f64; 3];

fn dot(a: V, b: V) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: V, b: V) -> V {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: V) -> f64 {
    dot(a, a).sqrt()
}

fn unit(a: V) -> V {
    let n = norm(a);
    if n == 0.0 {
        a
    } else {
        [a[0] / n, a[1] / n, a[2] / n]
    }
}

/// The unit vector of a position in degrees.
pub fn vector(ra: f64, dec: f64) -> V {
    // cos(90°) is not exactly 0 in floating point; the poles are exact points.
    if dec.abs() == 90.0 {
        return [0.0, 0.0, dec.signum()];
    }
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

/// The position in degrees (RA in [0, 360)) of a vector.
pub fn position(v: V) -> (f64, f64) {
    let ra = v[1].atan2(v[0]).to_degrees().rem_euclid(360.0);
    let dec = v[2].atan2((v[0] * v[0] + v[1] * v[1]).sqrt()).to_degrees();
    (if ra >= 360.0 { 0.0 } else { ra }, dec)
}

/// The angle between two unit vectors, in radians, accurate at all separations.
fn angle(a: V, b: V) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

/// Great-circle distance in degrees.
pub fn distance(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    distance_from(vector(ra1, dec1), vector(ra2, dec2))
}

/// [`distance`] between positions already in vector form (`a` is the first).
pub fn distance_from(a: V, b: V) -> f64 {
    angle(a, b).to_degrees()
}

/// A geometry in vector form.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A point.
    Point(V),
    /// A circle: centre and radius in radians.
    Circle(V, f64),
    /// A polygon: vertices, in the order that leaves the interior on the left.
    Polygon(Vec<V>),
}

/// Why a DALI array is not a geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct BadShape(pub String);

impl Shape {
    /// Reads a DALI array.
    pub fn from_values(v: &[f64]) -> Result<Shape, BadShape> {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(BadShape("a geometry has a non-finite coordinate".into()));
        }
        let check_dec = |d: f64| {
            if (-90.0..=90.0).contains(&d) {
                Ok(())
            } else {
                Err(BadShape(format!("declination {d} is outside [-90, 90]")))
            }
        };
        match v.len() {
            2 => {
                check_dec(v[1])?;
                Ok(Shape::Point(vector(v[0], v[1])))
            }
            3 => {
                check_dec(v[1])?;
                if v[2] < 0.0 || v[2] > 180.0 {
                    return Err(BadShape(format!(
                        "circle radius {} is outside [0, 180]",
                        v[2]
                    )));
                }
                Ok(Shape::Circle(vector(v[0], v[1]), v[2].to_radians()))
            }
            // The vertices of a shape from data (an upload's column) are
            // bounded as a written POLYGON's are: comparing two costs the
            // product of their vertices on every row.
            n if n / 2 > adql::MAX_POLYGON_VERTICES => Err(BadShape(format!(
                "a polygon may have at most {} vertices, this one has {}",
                adql::MAX_POLYGON_VERTICES,
                n / 2
            ))),
            n if n >= 6 && n % 2 == 0 => {
                let mut vs = Vec::with_capacity(n / 2);
                for p in v.chunks(2) {
                    check_dec(p[1])?;
                    vs.push(vector(p[0], p[1]));
                }
                Ok(Shape::Polygon(orient(vs)))
            }
            n => Err(BadShape(format!(
                "{n} values are not a point, circle or polygon"
            ))),
        }
    }

    /// Reads an STC-S region as TAP 1.0 services and ObsCore's `s_region`
    /// write it (`Polygon ICRS ra dec ...`, `Circle ICRS ra dec r`,
    /// `Position ICRS ra dec`), into a DALI array. Frame and reference
    /// position words are skipped: ADQL 2.1 reads every geometry as ICRS.
    pub fn stcs_values(text: &str) -> Result<Vec<f64>, BadShape> {
        let mut words = text.split_whitespace();
        let kind = words.next().unwrap_or_default().to_ascii_lowercase();
        let mut words = words.peekable();
        while let Some(w) = words.next_if(|w| w.parse::<f64>().is_err()) {
            // Frame and reference position words; another frame is another sky.
            let w = w.to_ascii_uppercase();
            if [
                "GALACTIC",
                "GALACTIC_II",
                "SUPER_GALACTIC",
                "ECLIPTIC",
                "FK4",
                "B1950",
            ]
            .contains(&w.as_str())
            {
                return Err(BadShape(format!(
                    "an STC-S region in {w}: only ICRS is read"
                )));
            }
        }
        let numbers: Vec<&str> = words.collect();
        let mut values = Vec::with_capacity(numbers.len());
        for w in &numbers {
            values.push(w.parse::<f64>().map_err(|_| {
                BadShape("an STC-S region has a coordinate that is not a number".into())
            })?);
        }
        let fits = match kind.as_str() {
            "position" | "point" => values.len() == 2,
            "circle" => values.len() == 3,
            "polygon" => values.len() >= 6 && values.len() % 2 == 0,
            // The text is not shown: it may be any column's value.
            _ => {
                return Err(BadShape(
                    "text used as a geometry is not an STC-S Position, Circle or Polygon".into(),
                ));
            }
        };
        if !fits {
            return Err(BadShape(format!(
                "STC-S {kind} with {} numbers",
                values.len()
            )));
        }
        Ok(values)
    }

    /// Writes a DALI array.
    pub fn to_values(&self) -> Vec<f64> {
        match self {
            Shape::Point(p) => {
                let (a, b) = position(*p);
                vec![a, b]
            }
            Shape::Circle(c, r) => {
                let (a, b) = position(*c);
                vec![a, b, r.to_degrees()]
            }
            Shape::Polygon(vs) => vs
                .iter()
                .flat_map(|v| {
                    let (a, b) = position(*v);
                    [a, b]
                })
                .collect(),
        }
    }

    /// Area in square degrees.
    pub fn area(&self) -> f64 {
        let sr = match self {
            Shape::Point(_) => 0.0,
            Shape::Circle(_, r) => 2.0 * PI * (1.0 - r.cos()),
            Shape::Polygon(vs) => signed_area(vs),
        };
        sr * (180.0 / PI) * (180.0 / PI)
    }

    /// The centroid.
    pub fn centroid(&self) -> V {
        match self {
            Shape::Point(p) => *p,
            Shape::Circle(c, _) => *c,
            Shape::Polygon(vs) => {
                // Area-weighted mean of the fan triangles' centres.
                let mut sum = [0.0; 3];
                for i in 1..vs.len() - 1 {
                    let w = triangle_area(vs[0], vs[i], vs[i + 1]);
                    let c = unit([
                        vs[0][0] + vs[i][0] + vs[i + 1][0],
                        vs[0][1] + vs[i][1] + vs[i + 1][1],
                        vs[0][2] + vs[i][2] + vs[i + 1][2],
                    ]);
                    for k in 0..3 {
                        sum[k] += w * c[k];
                    }
                }
                unit(sum)
            }
        }
    }

    /// Whether `self` lies entirely within `outer`.
    pub fn within(&self, outer: &Shape) -> bool {
        match (self, outer) {
            (Shape::Point(p), Shape::Point(q)) => angle(*p, *q) < 1e-12,
            (Shape::Point(p), Shape::Circle(c, r)) => angle(*p, *c) <= *r,
            (Shape::Point(p), Shape::Polygon(vs)) => in_polygon(*p, vs),
            (Shape::Circle(..), Shape::Point(_)) | (Shape::Polygon(_), Shape::Point(_)) => false,
            (Shape::Circle(c1, r1), Shape::Circle(c2, r2)) => angle(*c1, *c2) + r1 <= *r2,
            (Shape::Circle(c, r), Shape::Polygon(vs)) => {
                in_polygon(*c, vs) && edges(vs).all(|(a, b)| arc_distance(*c, a, b) >= *r)
            }
            (Shape::Polygon(vs), Shape::Circle(c, r)) => {
                // A cap of radius at most 90° is convex: holding the vertices is holding the arcs.
                *r <= PI / 2.0 && vs.iter().all(|v| angle(*v, *c) <= *r)
            }
            (Shape::Polygon(inner), Shape::Polygon(vs)) => {
                inner.iter().all(|v| in_polygon(*v, vs))
                    && !edges(inner).any(|(a, b)| edges(vs).any(|(c, d)| arcs_cross(a, b, c, d)))
            }
        }
    }

    /// Whether the two geometries share at least one point.
    pub fn intersects(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Point(_), _) => self.within(other),
            (_, Shape::Point(_)) => other.within(self),
            (Shape::Circle(c1, r1), Shape::Circle(c2, r2)) => angle(*c1, *c2) <= r1 + r2,
            (Shape::Circle(c, r), Shape::Polygon(vs))
            | (Shape::Polygon(vs), Shape::Circle(c, r)) => {
                in_polygon(*c, vs) || edges(vs).any(|(a, b)| arc_distance(*c, a, b) <= *r)
            }
            (Shape::Polygon(a), Shape::Polygon(b)) => {
                a.iter().any(|v| in_polygon(*v, b))
                    || b.iter().any(|v| in_polygon(*v, a))
                    || edges(a).any(|(p, q)| edges(b).any(|(r, s)| arcs_cross(p, q, r, s)))
            }
        }
    }
}

fn edges(vs: &[V]) -> impl Iterator<Item = (V, V)> + '_ {
    (0..vs.len()).map(move |i| (vs[i], vs[(i + 1) % vs.len()]))
}

/// Signed area (steradians) of a spherical triangle; positive when counter-clockwise.
fn triangle_area(a: V, b: V, c: V) -> f64 {
    2.0 * dot(a, cross(b, c)).atan2(1.0 + dot(a, b) + dot(b, c) + dot(c, a))
}

/// Signed area of a polygon as a fan of triangles (valid for non-convex polygons).
fn signed_area(vs: &[V]) -> f64 {
    (1..vs.len() - 1)
        .map(|i| triangle_area(vs[0], vs[i], vs[i + 1]))
        .sum()
}

/// Orders the vertices so that the interior (the smaller region) is on the left.
fn orient(mut vs: Vec<V>) -> Vec<V> {
    let a = signed_area(&vs);
    // A fan sum is defined modulo 4π; a negative one, or one above a hemisphere, is the other side.
    let a = a.rem_euclid(4.0 * PI);
    if a > 2.0 * PI {
        vs.reverse();
    }
    vs
}

/// Point in a polygon whose interior is on the left of its edges: the winding
/// number around `p`, checked on the polygon's own hemisphere so that a point
/// opposite a small polygon is not counted inside.
fn in_polygon(p: V, vs: &[V]) -> bool {
    if vs.iter().any(|v| angle(p, *v) < 1e-15) {
        return true;
    }
    let centre = Shape::Polygon(vs.to_vec()).centroid_rough();
    if dot(p, centre) <= 0.0 && signed_area(vs).abs() < 2.0 * PI - 1e-9 {
        // Every point of a polygon smaller than a hemisphere is within 90° of its centre...
        // unless it is a thin sliver around the centre; fall through to the winding test only then.
        if vs.iter().all(|v| dot(*v, centre) > 0.0) {
            return false;
        }
    }
    let mut total = 0.0;
    for (a, b) in edges(vs) {
        // The angle from a to b as seen from p, in the tangent plane at p.
        let y = dot(cross(a, b), p);
        let x = dot(a, b) - dot(a, p) * dot(b, p);
        total += y.atan2(x);
    }
    total > PI
}

impl Shape {
    fn centroid_rough(&self) -> V {
        match self {
            Shape::Polygon(vs) => unit(
                vs.iter()
                    .fold([0.0; 3], |s, v| [s[0] + v[0], s[1] + v[1], s[2] + v[2]]),
            ),
            other => other.centroid(),
        }
    }
}

/// Shortest angular distance (radians) from `p` to the great-circle arc `a`–`b`.
fn arc_distance(p: V, a: V, b: V) -> f64 {
    let n = cross(a, b);
    if norm(n) < 1e-15 {
        return angle(p, a);
    }
    let n = unit(n);
    // The foot of p on the great circle lies on the arc iff it is between a and b.
    let foot = unit(cross(cross(n, p), n));
    let on_arc = dot(cross(a, foot), n) >= 0.0 && dot(cross(foot, b), n) >= 0.0;
    if on_arc && norm(foot) > 0.0 {
        dot(p, n).abs().asin()
    } else {
        angle(p, a).min(angle(p, b))
    }
}

/// Whether arcs `a`–`b` and `c`–`d` (each shorter than 180°) cross.
fn arcs_cross(a: V, b: V, c: V, d: V) -> bool {
    let n1 = cross(a, b);
    let n2 = cross(c, d);
    let s1 = dot(n1, c);
    let s2 = dot(n1, d);
    let s3 = dot(n2, a);
    let s4 = dot(n2, b);
    if s1 * s2 > 0.0 || s3 * s4 > 0.0 {
        return false;
    }
    // Both great circles separate the other arc's ends: the crossing is either
    // x or -x; it is on both arcs only if the arcs face the same way.
    let x = cross(n1, n2);
    let on = |p: V, q: V, x: V| {
        let n = cross(p, q);
        dot(cross(p, x), n) >= 0.0 && dot(cross(x, q), n) >= 0.0
    };
    let neg = [-x[0], -x[1], -x[2]];
    (on(a, b, x) && on(c, d, x)) || (on(a, b, neg) && on(c, d, neg))
}

/// The four corners of an ADQL `BOX`: a gnomonic rectangle around the centre,
/// whose sides are great circles at half-width and half-height from it.
pub fn box_corners(ra: f64, dec: f64, width: f64, height: f64) -> Vec<f64> {
    let (a0, d0) = (ra.to_radians(), dec.to_radians());
    let (x, y) = (
        (width / 2.0).to_radians().tan(),
        (height / 2.0).to_radians().tan(),
    );
    let mut out = Vec::with_capacity(8);
    for (sx, sy) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)] {
        let (px, py) = (sx * x, sy * y);
        let rho = (px * px + py * py).sqrt();
        let c = rho.atan();
        let dec = (c.cos() * d0.sin() + py * c.sin() * d0.cos() / rho).asin();
        let ra = a0 + (px * c.sin()).atan2(rho * d0.cos() * c.cos() - py * d0.sin() * c.sin());
        out.push(ra.to_degrees().rem_euclid(360.0));
        out.push(dec.to_degrees());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(v: &[f64]) -> Shape {
        Shape::from_values(v).unwrap()
    }

    fn pt(ra: f64, dec: f64) -> Shape {
        Shape::Point(vector(ra, dec))
    }

    #[test]
    fn stcs_regions_read_as_dali_arrays() {
        assert_eq!(
            Shape::stcs_values("Polygon ICRS 1 2 3 4 5 6").unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(
            Shape::stcs_values("circle icrs geocenter 10 -20 0.5").unwrap(),
            vec![10.0, -20.0, 0.5]
        );
        assert_eq!(Shape::stcs_values("Position 1 2").unwrap(), vec![1.0, 2.0]);
        for bad in [
            "Box ICRS 1 2 3 4",
            "Polygon ICRS 1 2 3",
            "Circle ICRS 1 x 2",
            "Circle GALACTIC 1 2 3",
            "",
        ] {
            assert!(Shape::stcs_values(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn distance_is_exact_near_zero_and_pi() {
        assert!((distance(0.0, 0.0, 180.0, 0.0) - 180.0).abs() < 1e-12);
        assert!((distance(359.9999, 0.0, 0.0001, 0.0) - 0.0002).abs() < 1e-10);
        assert!((distance(10.0, 90.0, 200.0, 90.0)).abs() < 1e-12);
    }

    #[test]
    fn polygons_are_orientation_free_and_wrap_ra() {
        let ccw = poly(&[359.0, -1.0, 1.0, -1.0, 1.0, 1.0, 359.0, 1.0]);
        let cw = poly(&[359.0, 1.0, 1.0, 1.0, 1.0, -1.0, 359.0, -1.0]);
        for p in [pt(0.0, 0.0), pt(359.5, 0.5), pt(0.5, -0.5)] {
            assert!(p.within(&ccw) && p.within(&cw));
        }
        for p in [pt(2.0, 0.0), pt(180.0, 0.0), pt(358.0, 0.0)] {
            assert!(!p.within(&ccw) && !p.within(&cw));
        }
        assert!((ccw.area() - cw.area()).abs() < 1e-9);
        assert!((ccw.area() - 4.0).abs() < 0.01, "{}", ccw.area());
    }

    #[test]
    fn polygon_around_a_pole() {
        let cap = poly(&[0.0, 80.0, 90.0, 80.0, 180.0, 80.0, 270.0, 80.0]);
        assert!(pt(123.0, 89.0).within(&cap));
        assert!(!pt(123.0, -89.0).within(&cap));
        assert!(!pt(45.0, 75.0).within(&cap));
    }

    #[test]
    fn non_convex_polygon() {
        // An L shape.
        let l = poly(&[0.0, 0.0, 2.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0, 2.0]);
        assert!(pt(0.5, 1.5).within(&l));
        assert!(pt(1.5, 0.5).within(&l));
        assert!(!pt(1.5, 1.5).within(&l));
    }

    #[test]
    fn circle_area_and_relations() {
        let c = Shape::Circle(vector(0.0, 0.0), 1f64.to_radians());
        assert!((c.area() - std::f64::consts::PI).abs() < 0.01);
        let small = Shape::Circle(vector(0.2, 0.0), 0.5f64.to_radians());
        assert!(small.within(&c));
        assert!(!c.within(&small));
        let far = Shape::Circle(vector(5.0, 0.0), 1f64.to_radians());
        assert!(!far.intersects(&c));
        let near = Shape::Circle(vector(1.9, 0.0), 1f64.to_radians());
        assert!(near.intersects(&c));
    }

    #[test]
    fn box_has_great_circle_sides_and_wraps() {
        let b = Shape::from_values(&box_corners(0.0, 0.0, 2.0, 2.0)).unwrap();
        assert!(pt(359.5, 0.5).within(&b));
        assert!(!pt(1.5, 0.0).within(&b));
        let polar = Shape::from_values(&box_corners(0.0, 90.0, 2.0, 2.0)).unwrap();
        assert!(pt(77.0, 89.5).within(&polar));
    }

    #[test]
    fn polygon_centroid_is_inside() {
        let p = poly(&[10.0, 10.0, 12.0, 10.0, 12.0, 12.0, 10.0, 12.0]);
        let (ra, dec) = position(p.centroid());
        assert!(
            (ra - 11.0).abs() < 0.01 && (dec - 11.0).abs() < 0.02,
            "{ra} {dec}"
        );
    }

    #[test]
    fn a_polygon_from_data_has_at_most_as_many_vertices_as_a_written_one() {
        let ring = |n: usize| -> Vec<f64> {
            (0..n)
                .flat_map(|i| {
                    let a = i as f64 / n as f64 * std::f64::consts::TAU;
                    [10.0 + a.cos(), 5.0 + a.sin()]
                })
                .collect()
        };
        assert!(Shape::from_values(&ring(adql::MAX_POLYGON_VERTICES)).is_ok());
        let e = Shape::from_values(&ring(adql::MAX_POLYGON_VERTICES + 1)).unwrap_err();
        assert!(e.0.contains("at most 256 vertices"), "{}", e.0);
    }
}
