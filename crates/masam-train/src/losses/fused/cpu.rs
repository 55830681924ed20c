//! CPU kernels of the fused Dice+CE loss: one pass for the sums, one pass for the gradient.
//!
//! Pixels are cut into fixed chunks of at most [`CHUNK`] consecutive pixels of one batch item.
//! Each chunk is processed sequentially (per-pixel softmax over the K classes, then its
//! contributions), chunks run in parallel on the current rayon pool, and the per-chunk partial
//! sums (f64) are added in chunk order. The chunking never depends on the number of threads, so
//! the results are bit-identical for any pool size.

use rayon::prelude::*;

/// Pixels per chunk (a chunk never crosses a batch item).
pub(crate) const CHUNK: usize = 2048;

/// One chunk of work: (batch item, first pixel, number of pixels).
type Chunk = (usize, usize, usize);

/// Logits layout and loss constants shared by both passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    /// Batch size N.
    pub n: usize,
    /// Number of classes K.
    pub k: usize,
    /// Pixels per batch item S (product of the spatial dims).
    pub s: usize,
    /// Label value that marks an ignored pixel.
    pub ignore_index: i64,
}

impl Geometry {
    /// The chunks as (batch item, first pixel, length), in their fixed summation order.
    fn chunks(&self) -> Vec<Chunk> {
        let mut out = Vec::with_capacity(self.n * self.s.div_ceil(CHUNK));
        for b in 0..self.n {
            let mut s0 = 0;
            while s0 < self.s {
                let len = CHUNK.min(self.s - s0);
                out.push((b, s0, len));
                s0 += len;
            }
        }
        out
    }

    /// The target class of a label, `None` if the pixel does not count.
    #[inline]
    fn target(&self, label: i64) -> Option<usize> {
        if label == self.ignore_index || label < 0 || label >= self.k as i64 {
            None
        } else {
            Some(label as usize)
        }
    }
}

/// Integer label types accepted by the kernels.
pub(crate) trait Label: Copy + Send + Sync + Into<i64> {}
impl Label for u8 {}
impl Label for u32 {}
impl Label for i64 {}

/// Whole-batch sums of one forward pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stats {
    /// Σ −log p[label] over counted pixels.
    pub ce_sum: f64,
    /// Per class: I_c = Σ p_c·t_c·m.
    pub inter: Vec<f64>,
    /// Per class: Y_c = Σ t_c·m (a pixel count).
    pub y: Vec<f64>,
    /// Per class: Z_c = Σ p_c²·m.
    pub z: Vec<f64>,
    /// Number of counted pixels.
    pub n_valid: u64,
}

impl Stats {
    fn zeros(k: usize) -> Self {
        Self {
            ce_sum: 0.0,
            inter: vec![0.0; k],
            y: vec![0.0; k],
            z: vec![0.0; k],
            n_valid: 0,
        }
    }

    fn add(&mut self, other: &Stats) {
        self.ce_sum += other.ce_sum;
        for (a, b) in [
            (&mut self.inter, &other.inter),
            (&mut self.y, &other.y),
            (&mut self.z, &other.z),
        ] {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        self.n_valid += other.n_valid;
    }

    /// Mean cross-entropy over counted pixels (NaN if none count).
    pub fn ce(&self) -> f64 {
        self.ce_sum / self.n_valid as f64
    }

    /// Soft Dice loss: mean over classes of `1 − (2I + s)/(Z + Y + s)`.
    pub fn dice(&self, smooth: f64) -> f64 {
        let k = self.inter.len();
        let per_class: f64 = (0..k)
            .map(|c| 1.0 - (2.0 * self.inter[c] + smooth) / (self.z[c] + self.y[c] + smooth))
            .sum();
        per_class / k as f64
    }
}

/// `exp(x)` for `x ≤ 0` (the shifted logits), written so that loops over it vectorise.
///
/// Cody–Waite reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, and the Cephes `expf` polynomial for
/// `e^r` (about 1 ulp, like libm), then `2^n` built from its exponent bits. Inputs below
/// `ln(2^-126)` give 0 (the true value is a denormal or 0; against the softmax's maximum term
/// 1 it is nothing). NaN stays NaN; `-inf` gives 0. Positive inputs are not supported (the
/// callers subtract the maximum first).
#[inline(always)]
fn exp_nonpos(x: f32) -> f32 {
    const LO: f32 = -87.336_55; // ln(2^-126)
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4; // ln2 split: C1 + C2 = ln2, C1 exact in 9 bits
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
                                     // NaN fails the comparison and flows through.
    let xc = if x < LO { LO } else { x };
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = xc - n * C1 - n * C2;
    let r2 = r * r;
    let poly = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let er = poly * r2 + r + 1.0;
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    let v = er * scale;
    if x < LO {
        0.0
    } else {
        v
    }
}

/// Softmax of one chunk: `e[c·len + i]` = p_c of pixel i; `mx` gets the per-pixel max and `sum`
/// the per-pixel `Σ_c exp(z_c − max)`.
///
/// `zb` is the (K, S) logits block of the chunk's batch item.
fn chunk_softmax(
    zb: &[f32],
    g: &Geometry,
    s0: usize,
    len: usize,
    e: &mut [f32],
    mx: &mut [f32],
    sum: &mut [f32],
) {
    mx.fill(f32::NEG_INFINITY);
    sum.fill(0.0);
    for c in 0..g.k {
        let row = &zb[c * g.s + s0..c * g.s + s0 + len];
        mx.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m = if v > *m { v } else { *m });
    }
    for c in 0..g.k {
        let row = &zb[c * g.s + s0..c * g.s + s0 + len];
        let erow = &mut e[c * len..(c + 1) * len];
        for (((ev, &z), &m), s) in erow.iter_mut().zip(row).zip(mx.iter()).zip(sum.iter_mut()) {
            let v = exp_nonpos(z - m);
            *ev = v;
            *s += v;
        }
    }
    // Normalise; `sum` keeps Σ exp(z − max) for the caller's log-sum-exp.
    let inv: Vec<f32> = sum.iter().map(|&s| 1.0 / s).collect();
    for c in 0..g.k {
        let erow = &mut e[c * len..(c + 1) * len];
        erow.iter_mut().zip(&inv).for_each(|(p, &r)| *p *= r);
    }
}

/// `Σ (a_i·m_i)²` in f64, over 8 interleaved accumulators (a fixed order, so deterministic).
fn sum_sq_masked(a: &[f32], m: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cm = m.chunks_exact(8);
    for (xa, xm) in (&mut ca).zip(&mut cm) {
        for j in 0..8 {
            let v = xa[j] * xm[j];
            acc[j] += (v * v) as f64;
        }
    }
    let mut tail = 0f64;
    for (&x, &w) in ca.remainder().iter().zip(cm.remainder()) {
        let v = x * w;
        tail += (v * v) as f64;
    }
    acc.iter().sum::<f64>() + tail
}

/// Forward sums over the whole batch.
///
/// # Shapes
/// - `logits`: N·K·S values, (N, K, S) row-major
/// - `labels`: N·S values, (N, S) row-major
pub(crate) fn forward_stats<L: Label>(logits: &[f32], labels: &[L], g: &Geometry) -> Stats {
    let partials: Vec<Stats> = g
        .chunks()
        .into_par_iter()
        .map(|(b, s0, len)| {
            let zb = &logits[b * g.k * g.s..(b + 1) * g.k * g.s];
            let lb = &labels[b * g.s + s0..b * g.s + s0 + len];
            let mut e = vec![0f32; g.k * len];
            let mut mx = vec![0f32; len];
            let mut sum = vec![0f32; len];
            chunk_softmax(zb, g, s0, len, &mut e, &mut mx, &mut sum);
            let mut st = Stats::zeros(g.k);
            // Counted-pixel mask (0/1) of the chunk.
            let mut m = vec![0f32; len];
            for (i, &l) in lb.iter().enumerate() {
                if let Some(t) = g.target(l.into()) {
                    m[i] = 1.0;
                    st.n_valid += 1;
                    st.y[t] += 1.0;
                    st.inter[t] += e[t * len + i] as f64;
                    // −log p_t = ln Σ exp(z − max) − (z_t − max).
                    let shifted = zb[t * g.s + s0 + i] - mx[i];
                    st.ce_sum += (sum[i].ln() - shifted) as f64;
                }
            }
            for c in 0..g.k {
                st.z[c] = sum_sq_masked(&e[c * len..(c + 1) * len], &m);
            }
            st
        })
        .collect();
    let mut total = Stats::zeros(g.k);
    for p in &partials {
        total.add(p);
    }
    total
}

/// Gradient of `a·CE + b·Dice` w.r.t. the logits, given the forward sums.
///
/// Per counted pixel with softmax p and target y (ignored pixels get 0):
/// `dCE/dz_k = (p_k − [k=y])/N_valid`; with `D_c = Z_c + Y_c + s`, `N_c = 2I_c + s`,
/// `dDice/dp_c = −(1/K)·(2[c=y]/D_c − 2N_c·p_c/D_c²) = g_c`, pushed through the softmax
/// Jacobian: `dDice/dz_k = p_k·(g_k − Σ_c g_c p_c)`.
///
/// # Shapes
/// - `logits`: N·K·S values, (N, K, S) row-major
/// - `labels`: N·S values
/// - returns: N·K·S values
pub(crate) fn backward<L: Label>(
    logits: &[f32],
    labels: &[L],
    g: &Geometry,
    stats: &Stats,
    smooth: f64,
    a: f64,
    b: f64,
) -> Vec<f32> {
    let k = g.k;
    let ce_scale = (a / stats.n_valid as f64) as f32;
    // g_c = −alpha_c·[c=y] + beta_c·p_c, each already scaled by b.
    let mut alpha = vec![0f32; k];
    let mut beta = vec![0f32; k];
    for c in 0..k {
        let d = stats.z[c] + stats.y[c] + smooth;
        let num = 2.0 * stats.inter[c] + smooth;
        alpha[c] = (b * 2.0 / (k as f64 * d)) as f32;
        beta[c] = (b * 2.0 * num / (k as f64 * d * d)) as f32;
    }
    let mut grad = vec![0f32; logits.len()];
    // Split the output into per-chunk groups of K disjoint row pieces.
    let mut jobs: Vec<(Chunk, Vec<&mut [f32]>)> = Vec::new();
    if k > 0 && g.s > 0 {
        let chunks = g.chunks();
        let mut next = 0;
        for gb in grad.chunks_mut(k * g.s) {
            let mut rows: Vec<_> = gb.chunks_mut(g.s).map(|r| r.chunks_mut(CHUNK)).collect();
            for _ in 0..g.s.div_ceil(CHUNK) {
                let pieces: Vec<&mut [f32]> = rows
                    .iter_mut()
                    .map(|r| r.next().expect("row chunk"))
                    .collect();
                jobs.push((chunks[next], pieces));
                next += 1;
            }
        }
    }
    jobs.into_par_iter().for_each(|((bi, s0, len), mut out)| {
        let zb = &logits[bi * k * g.s..(bi + 1) * k * g.s];
        let lb = &labels[bi * g.s + s0..bi * g.s + s0 + len];
        let mut e = vec![0f32; k * len];
        let mut mx = vec![0f32; len];
        let mut sum = vec![0f32; len];
        chunk_softmax(zb, g, s0, len, &mut e, &mut mx, &mut sum);
        // Per pixel: target (K = ignored), mask and the shift Σ_c g_c p_c.
        let mut tgt = vec![k as u32; len];
        let mut m = vec![0f32; len];
        let mut sg = vec![0f32; len];
        for (i, &l) in lb.iter().enumerate() {
            if let Some(t) = g.target(l.into()) {
                tgt[i] = t as u32;
                m[i] = 1.0;
                sg[i] = -alpha[t] * e[t * len + i];
            }
        }
        for c in 0..k {
            let erow = &e[c * len..(c + 1) * len];
            let bc = beta[c];
            sg.iter_mut().zip(erow).for_each(|(s, &p)| *s += bc * p * p);
        }
        for c in 0..k {
            let erow = &e[c * len..(c + 1) * len];
            let orow = &mut out[c][..len];
            let (ac, bc, cu) = (alpha[c], beta[c], c as u32);
            for i in 0..len {
                let p = erow[i];
                let onehot = if tgt[i] == cu { 1.0 } else { 0.0 };
                let v = ce_scale * (p - onehot) + p * (bc * p - ac * onehot - sg[i]);
                orow[i] = v * m[i];
            }
        }
    });
    grad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let got = exp_nonpos(x) as f64;
            worst = worst.max((got - want).abs() / want);
            x += 0.000_731;
        }
        assert!(worst < 2.5e-7, "max rel err {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(-100.0), 0.0);
        assert_eq!(exp_nonpos(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpos(f32::NAN).is_nan());
    }

    #[test]
    fn masked_square_sum_is_exact_enough() {
        let a: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.37).sin()).collect();
        let m: Vec<f32> = (0..1003).map(|i| (i % 3 != 0) as u8 as f32).collect();
        let want: f64 = a
            .iter()
            .zip(&m)
            .map(|(&x, &w)| ((x * w) as f64).powi(2))
            .sum();
        assert!((sum_sq_masked(&a, &m) - want).abs() < 1e-9 * want);
    }
}
