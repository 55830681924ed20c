//! Implicit 3D shapes of the phantom, sliced into in-plane sections and painted pixel by pixel.
//!
//! World frame (mm): `x` to the image right (the patient's left), `y` to the image bottom
//! (posterior), `z` superior.

/// An ellipsoid-like blob: a superellipse profile along z, an in-plane ellipse that drifts and
/// tapers with z, and a wavy boundary (angular harmonics whose phase turns smoothly with z).
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    /// Centre (x, y, z) mm.
    pub centre: [f64; 3],
    /// Semi-axes (a along the rotated x, b along the rotated y, c along z) mm.
    pub semi: [f64; 3],
    /// In-plane rotation (radians).
    pub angle: f64,
    /// Centre drift (dx/dz, dy/dz).
    pub drift: [f64; 2],
    /// Relative in-plane size change per unit of normalised height `t ∈ [−1, 1]`.
    pub taper: f64,
    /// Profile exponent along z (2 = ellipsoid, larger = flatter ends).
    pub power: f64,
    /// Boundary harmonics `(order, amplitude, phase, twist)`: r(θ) = 1 + Σ amp·cos(kθ + φ + twist·t).
    pub harmonics: Vec<(f64, f64, f64, f64)>,
}

/// A tube: the union of balls swept along a polyline with per-vertex radii (linearly
/// interpolated); `aspect` squashes the in-plane cross-section along y.
#[derive(Debug, Clone)]
pub(crate) struct Tube {
    /// Ball centres (x, y, z) and radii, densely resampled.
    balls: Vec<([f64; 3], f64)>,
    /// y radius / x radius.
    aspect: f64,
}

impl Tube {
    /// A tube through `points` with `radii` (one per point), sampled every `≤ r/3`.
    pub(crate) fn new(points: &[[f64; 3]], radii: &[f64], aspect: f64) -> Self {
        let mut balls = Vec::new();
        for i in 0..points.len().saturating_sub(1) {
            let (p, q) = (points[i], points[i + 1]);
            let (rp, rq) = (radii[i], radii[i + 1]);
            let len =
                ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2)).sqrt();
            let step = (rp.min(rq) / 3.0).max(0.25);
            let n = ((len / step).ceil() as usize).max(1);
            for j in 0..n {
                let t = j as f64 / n as f64;
                let c = [
                    p[0] + t * (q[0] - p[0]),
                    p[1] + t * (q[1] - p[1]),
                    p[2] + t * (q[2] - p[2]),
                ];
                balls.push((c, rp + t * (rq - rp)));
            }
        }
        if let (Some(&p), Some(&r)) = (points.last(), radii.last()) {
            balls.push((p, r));
        }
        Self { balls, aspect }
    }
}

/// A 3D shape of the phantom.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// See [`Blob`].
    Blob(Blob),
    /// See [`Tube`].
    Tube(Tube),
}

/// The cross-section of a shape at one height.
pub(crate) enum Section<'a> {
    /// A (wavy) rotated ellipse.
    Ellipse {
        c: [f64; 2],
        a: f64,
        b: f64,
        cos: f64,
        sin: f64,
        t: f64,
        harmonics: &'a [(f64, f64, f64, f64)],
    },
    /// A union of ellipses `(cx, cy, rx, ry)`.
    Disks(Vec<[f64; 4]>),
}

impl Shape {
    /// The section at height `z`, or `None` when the shape does not reach it.
    pub(crate) fn section(&self, z: f64) -> Option<Section<'_>> {
        match self {
            Shape::Blob(b) => {
                let t = (z - b.centre[2]) / b.semi[2];
                if t.abs() >= 1.0 {
                    return None;
                }
                let f = (1.0 - t.abs().powf(b.power)).powf(1.0 / b.power) * (1.0 + b.taper * t);
                if f <= 0.0 {
                    return None;
                }
                let dz = z - b.centre[2];
                Some(Section::Ellipse {
                    c: [b.centre[0] + b.drift[0] * dz, b.centre[1] + b.drift[1] * dz],
                    a: b.semi[0] * f,
                    b: b.semi[1] * f,
                    cos: b.angle.cos(),
                    sin: b.angle.sin(),
                    t,
                    harmonics: &b.harmonics,
                })
            }
            Shape::Tube(tube) => {
                let disks: Vec<[f64; 4]> = tube
                    .balls
                    .iter()
                    .filter_map(|&(c, r)| {
                        let dz = z - c[2];
                        (dz.abs() < r).then(|| {
                            let rr = (r * r - dz * dz).sqrt();
                            [c[0], c[1], rr, rr * tube.aspect]
                        })
                    })
                    .collect();
                (!disks.is_empty()).then_some(Section::Disks(disks))
            }
        }
    }
}

impl Section<'_> {
    /// Bounding box `(x0, y0, x1, y1)` in mm.
    pub(crate) fn bbox(&self) -> [f64; 4] {
        match self {
            Section::Ellipse {
                c, a, b, harmonics, ..
            } => {
                let grow = 1.0 + harmonics.iter().map(|h| h.1.abs()).sum::<f64>();
                let r = a.max(*b) * grow;
                [c[0] - r, c[1] - r, c[0] + r, c[1] + r]
            }
            Section::Disks(d) => {
                d.iter()
                    .fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |acc, k| {
                        [
                            acc[0].min(k[0] - k[2]),
                            acc[1].min(k[1] - k[3]),
                            acc[2].max(k[0] + k[2]),
                            acc[3].max(k[1] + k[3]),
                        ]
                    })
            }
        }
    }

    /// Whether the point `(x, y)` (mm) is inside.
    pub(crate) fn contains(&self, x: f64, y: f64) -> bool {
        match self {
            Section::Ellipse {
                c,
                a,
                b,
                cos,
                sin,
                t,
                harmonics,
            } => {
                let (dx, dy) = (x - c[0], y - c[1]);
                let u = (cos * dx + sin * dy) / a;
                let v = (-sin * dx + cos * dy) / b;
                let rho2 = u * u + v * v;
                if harmonics.is_empty() {
                    return rho2 < 1.0;
                }
                // Skip the trigonometry away from the wavy band.
                let spread: f64 = harmonics.iter().map(|h| h.1.abs()).sum();
                if rho2 < (1.0 - spread).max(0.0).powi(2) {
                    return true;
                }
                if rho2 >= (1.0 + spread).powi(2) {
                    return false;
                }
                let th = v.atan2(u);
                let r: f64 = 1.0
                    + harmonics
                        .iter()
                        .map(|&(k, amp, ph, tw)| amp * (k * th + ph + tw * t).cos())
                        .sum::<f64>();
                rho2 < r * r
            }
            Section::Disks(d) => d.iter().any(|k| {
                let (u, v) = ((x - k[0]) / k[2], (y - k[1]) / k[3]);
                u * u + v * v < 1.0
            }),
        }
    }
}
