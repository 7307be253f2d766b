//! Where the sample's sky is: a square patch around a field centre, anywhere
//! on the sphere. The patch is a square in a frame rotated so that its origin
//! is the centre, so it crosses RA = 0 and covers a pole as easily as it sits
//! at (55°, −30°); fields and detectors lie in the tangent plane of their
//! pointing. Positions that come out of it are always RA in [0, 360) and Dec
//! in [−90, 90], as ingest requires.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Side of a bucket of the neighbour grid, in degrees of the local frame.
const BUCKET: f64 = 0.5;

/// The patch, and a grid of what lies in it, for finding the objects in a field.
pub(super) struct Sky {
    ra_c: f64,
    dec_c: f64,
    side: f64,
    n: usize,
    /// Per bucket: (index, ra, dec) of what was added there.
    grid: Vec<Vec<(usize, f64, f64)>>,
}

impl Sky {
    /// A square patch of `side` degrees (at most 170) centred on (`ra`, `dec`).
    pub fn new(ra: f64, dec: f64, side: f64) -> Sky {
        let side = side.clamp(1e-3, 170.0);
        let n = ((side / BUCKET).ceil() as usize).max(1);
        Sky {
            ra_c: ra.rem_euclid(360.0),
            dec_c: dec.clamp(-90.0, 90.0),
            side,
            n,
            grid: vec![Vec::new(); n * n],
        }
    }

    /// A point drawn uniformly over the patch's area.
    pub fn random_point(&self, rng: &mut ChaCha8Rng) -> (f64, f64) {
        let h = self.side / 2.0;
        let x = -h + rng.random::<f64>() * self.side;
        // Uniform in area: sin(latitude) uniform between the edges.
        let (s0, s1) = ((-h).to_radians().sin(), h.to_radians().sin());
        let y = (s0 + rng.random::<f64>() * (s1 - s0)).asin().to_degrees();
        self.to_sky(x, y)
    }

    /// Local frame (longitude, latitude around the centre) to RA and Dec.
    fn to_sky(&self, x: f64, y: f64) -> (f64, f64) {
        let (x, y) = (x.to_radians(), y.to_radians());
        let v = [y.cos() * x.cos(), y.cos() * x.sin(), y.sin()];
        let (d, a) = (self.dec_c.to_radians(), self.ra_c.to_radians());
        // Tilt the origin up to the centre's Dec, then turn it to its RA.
        let (x1, z1) = (
            v[0] * d.cos() - v[2] * d.sin(),
            v[0] * d.sin() + v[2] * d.cos(),
        );
        let (x2, y2) = (x1 * a.cos() - v[1] * a.sin(), x1 * a.sin() + v[1] * a.cos());
        sky_of(x2, y2, z1)
    }

    /// RA and Dec to the local frame.
    fn to_local(&self, ra: f64, dec: f64) -> (f64, f64) {
        let (r, t) = (ra.to_radians(), dec.to_radians());
        let v = [t.cos() * r.cos(), t.cos() * r.sin(), t.sin()];
        let (d, a) = (self.dec_c.to_radians(), self.ra_c.to_radians());
        let (x1, y1) = (
            v[0] * a.cos() + v[1] * a.sin(),
            -v[0] * a.sin() + v[1] * a.cos(),
        );
        let (x0, z0) = (
            x1 * d.cos() + v[2] * d.sin(),
            -x1 * d.sin() + v[2] * d.cos(),
        );
        (
            y1.atan2(x0).to_degrees(),
            z0.clamp(-1.0, 1.0).asin().to_degrees(),
        )
    }

    fn bucket(&self, x: f64, y: f64) -> (usize, usize) {
        let at = |c: f64| {
            ((c + self.side / 2.0) / BUCKET)
                .floor()
                .clamp(0.0, (self.n - 1) as f64) as usize
        };
        (at(x), at(y))
    }

    /// Remembers that `index` lies at (`ra`, `dec`).
    pub fn add(&mut self, index: usize, ra: f64, dec: f64) {
        let (x, y) = self.to_local(ra, dec);
        let (bx, by) = self.bucket(x, y);
        self.grid[bx * self.n + by].push((index, ra, dec));
    }

    /// What was added within `radius` degrees of (`ra`, `dec`), in index order.
    pub fn near(&self, ra: f64, dec: f64, radius: f64) -> Vec<usize> {
        let (x, y) = self.to_local(ra, dec);
        let (cx, cy) = self.bucket(x, y);
        // A degree of local longitude shrinks with local latitude.
        let lat = (y.abs() + radius).min(89.0).to_radians();
        let rx = (radius / lat.cos() / BUCKET).ceil() as i64 + 1;
        let ry = (radius / BUCKET).ceil() as i64 + 1;
        let last = self.n as i64 - 1;
        let mut out = Vec::new();
        for bx in (cx as i64 - rx).max(0)..=(cx as i64 + rx).min(last) {
            for by in (cy as i64 - ry).max(0)..=(cy as i64 + ry).min(last) {
                for &(i, r, d) in &self.grid[(bx as usize) * self.n + by as usize] {
                    if separation(ra, dec, r, d) <= radius {
                        out.push(i);
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }
}

fn sky_of(x: f64, y: f64, z: f64) -> (f64, f64) {
    let ra = y.atan2(x).to_degrees().rem_euclid(360.0);
    // rem_euclid can round up to 360 itself.
    let ra = if ra >= 360.0 { 0.0 } else { ra };
    (
        ra,
        z.clamp(-1.0, 1.0).asin().to_degrees().clamp(-90.0, 90.0),
    )
}

/// Great-circle distance in degrees.
pub(super) fn separation(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (r1, d1, r2, d2) = (
        ra1.to_radians(),
        dec1.to_radians(),
        ra2.to_radians(),
        dec2.to_radians(),
    );
    let h = ((d2 - d1) / 2.0).sin().powi(2) + d1.cos() * d2.cos() * ((r2 - r1) / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin().to_degrees()
}

/// Offsets (ξ, η) in degrees of (`ra`, `dec`) in the tangent plane at (`ra0`, `dec0`).
pub(super) fn tangent(ra: f64, dec: f64, ra0: f64, dec0: f64) -> (f64, f64) {
    let (a, d, a0, d0) = (
        ra.to_radians(),
        dec.to_radians(),
        ra0.to_radians(),
        dec0.to_radians(),
    );
    let cosc = d0.sin() * d.sin() + d0.cos() * d.cos() * (a - a0).cos();
    let xi = d.cos() * (a - a0).sin() / cosc;
    let eta = (d0.cos() * d.sin() - d0.sin() * d.cos() * (a - a0).cos()) / cosc;
    (xi.to_degrees(), eta.to_degrees())
}

/// The point at offsets (ξ, η) degrees in the tangent plane at (`ra0`, `dec0`).
pub(super) fn untangent(xi: f64, eta: f64, ra0: f64, dec0: f64) -> (f64, f64) {
    let (xi, eta) = (xi.to_radians(), eta.to_radians());
    let (a0, d0) = (ra0.to_radians(), dec0.to_radians());
    // The plane point as a vector: the centre, plus ξ east and η north.
    let centre = [d0.cos() * a0.cos(), d0.cos() * a0.sin(), d0.sin()];
    let east = [-a0.sin(), a0.cos(), 0.0];
    let north = [-d0.sin() * a0.cos(), -d0.sin() * a0.sin(), d0.cos()];
    let v: Vec<f64> = (0..3)
        .map(|k| centre[k] + xi * east[k] + eta * north[k])
        .collect();
    let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    sky_of(v[0] / norm, v[1] / norm, v[2] / norm)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn patches_cross_ra_zero_and_the_poles_and_stay_on_the_sphere() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (ra, dec) in [(0.0, 0.0), (359.9, -10.0), (10.0, -89.5), (200.0, 90.0)] {
            let sky = Sky::new(ra, dec, 6.0);
            let mut east_of_zero = false;
            for _ in 0..2000 {
                let (r, d) = sky.random_point(&mut rng);
                assert!(
                    (0.0..360.0).contains(&r) && (-90.0..=90.0).contains(&d),
                    "{r} {d}"
                );
                assert!(
                    separation(r, d, ra, dec) <= 6.0 * 0.75,
                    "{r} {d} from {ra} {dec}"
                );
                east_of_zero |= r < 10.0;
                let (x, y) = sky.to_local(r, d);
                let back = sky.to_sky(x, y);
                assert!(separation(back.0, back.1, r, d) < 1e-9);
            }
            if ra == 0.0 {
                assert!(east_of_zero, "a patch at RA 0 reaches both sides of it");
            }
        }
    }

    #[test]
    fn the_tangent_plane_round_trips_even_at_a_pole() {
        for (ra0, dec0) in [(55.0, -30.0), (0.0, 89.9), (180.0, -90.0), (359.0, 0.0)] {
            let (ra, dec) = untangent(0.7, -1.2, ra0, dec0);
            let (xi, eta) = tangent(ra, dec, ra0, dec0);
            assert!(
                (xi - 0.7).abs() < 1e-9 && (eta + 1.2).abs() < 1e-9,
                "{ra0} {dec0}"
            );
        }
    }

    #[test]
    fn near_finds_what_lies_within_the_radius() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sky_ = Sky::new(0.0, -88.0, 8.0);
        let mut sky = Sky::new(0.0, -88.0, 8.0);
        let points: Vec<(f64, f64)> = (0..3000).map(|_| sky_.random_point(&mut rng)).collect();
        for (i, (r, d)) in points.iter().enumerate() {
            sky.add(i, *r, *d);
        }
        let (r0, d0) = points[17];
        let want: Vec<usize> = (0..points.len())
            .filter(|&i| separation(points[i].0, points[i].1, r0, d0) <= 1.75)
            .collect();
        assert_eq!(sky.near(r0, d0, 1.75), want);
    }
}
