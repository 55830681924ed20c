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
        mx.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
    }
    for c in 0..g.k {
        let row = &zb[c * g.s + s0..c * g.s + s0 + len];
        let erow = &mut e[c * len..(c + 1) * len];
        for i in 0..len {
            let v = (row[i] - mx[i]).exp();
            erow[i] = v;
            sum[i] += v;
        }
    }
    // Normalise; `sum` keeps Σ exp(z − max) for the caller's log-sum-exp.
    for c in 0..g.k {
        let erow = &mut e[c * len..(c + 1) * len];
        erow.iter_mut().zip(sum.iter()).for_each(|(p, &s)| *p /= s);
    }
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
                let erow = &e[c * len..(c + 1) * len];
                let mut acc = 0f64;
                for (&p, &mi) in erow.iter().zip(&m) {
                    let pm = p * mi;
                    acc += (pm * pm) as f64;
                }
                st.z[c] = acc;
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
        // Per pixel: target (K = ignored) and the shift Σ_c g_c p_c.
        let mut tgt = vec![k; len];
        let mut sg = vec![0f32; len];
        for (i, &l) in lb.iter().enumerate() {
            if let Some(t) = g.target(l.into()) {
                tgt[i] = t;
            }
        }
        for c in 0..k {
            let erow = &e[c * len..(c + 1) * len];
            let bc = beta[c];
            sg.iter_mut().zip(erow).for_each(|(s, &p)| *s += bc * p * p);
        }
        for i in 0..len {
            if tgt[i] < k {
                sg[i] -= alpha[tgt[i]] * e[tgt[i] * len + i];
            }
        }
        for c in 0..k {
            let erow = &e[c * len..(c + 1) * len];
            let orow = &mut out[c][..];
            let (ac, bc) = (alpha[c], beta[c]);
            for i in 0..len {
                let p = erow[i];
                let hit = tgt[i] == c;
                let onehot = if hit { 1.0 } else { 0.0 };
                let v = ce_scale * (p - onehot) + p * (bc * p - ac * onehot - sg[i]);
                orow[i] = if tgt[i] < k { v } else { 0.0 };
            }
        }
    });
    grad
}
