//! Smooth 3D value noise (trilinear with smoothstep) for organ texture.

use rand::Rng;

/// A random lattice with cell size `cell` mm covering a box; `sample` is smooth and in [−1, 1].
pub(crate) struct ValueNoise {
    cell: f64,
    origin: [f64; 3],
    dims: [usize; 3],
    values: Vec<f32>,
}

impl ValueNoise {
    /// A lattice covering `[lo, hi]` (mm, per axis) with spacing `cell`.
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R, lo: [f64; 3], hi: [f64; 3], cell: f64) -> Self {
        let dims = [0, 1, 2].map(|a| ((hi[a] - lo[a]) / cell).ceil() as usize + 2);
        let n = dims[0] * dims[1] * dims[2];
        let values = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        Self {
            cell,
            origin: lo,
            dims,
            values,
        }
    }

    /// The noise at `(x, y, z)` mm.
    pub(crate) fn sample(&self, p: [f64; 3]) -> f32 {
        let mut i = [0usize; 3];
        let mut f = [0f32; 3];
        for a in 0..3 {
            let u = ((p[a] - self.origin[a]) / self.cell).clamp(0.0, (self.dims[a] - 2) as f64);
            let iu = (u.floor() as usize).min(self.dims[a] - 2);
            let fu = (u - iu as f64) as f32;
            i[a] = iu;
            f[a] = fu * fu * (3.0 - 2.0 * fu);
        }
        let at =
            |x: usize, y: usize, z: usize| self.values[(z * self.dims[1] + y) * self.dims[0] + x];
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let [x, y, z] = i;
        let c00 = lerp(at(x, y, z), at(x + 1, y, z), f[0]);
        let c10 = lerp(at(x, y + 1, z), at(x + 1, y + 1, z), f[0]);
        let c01 = lerp(at(x, y, z + 1), at(x + 1, y, z + 1), f[0]);
        let c11 = lerp(at(x, y + 1, z + 1), at(x + 1, y + 1, z + 1), f[0]);
        lerp(lerp(c00, c10, f[1]), lerp(c01, c11, f[1]), f[2])
    }
}
