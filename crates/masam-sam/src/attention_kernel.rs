//! The CPU kernel of SAM's windowed (and global) attention (`f32`), forward and backward.
//!
//! [`Attention::forward_windowed`](crate::Attention::forward_windowed) composes candle ops:
//! padding by concatenation, a permuted copy of q/k/v into window-major order, per-band copies,
//! the scaled product, the softmax with SAM's relative positions, the product with v and the
//! copies back into the token map. Each is a pass over tens of megabytes at 512 px, and the
//! logits of a band of windows do not stay in cache. This kernel computes the same thing in one
//! parallel loop that reads the qkv projection in place:
//!
//! - **global attention** (one window covering the map): for each image and block of query rows,
//!   and each head, `S = scale·Q·Kᵀ` reads Q, K and V straight out of the (B, H, W, 3C) qkv
//!   buffer through strides, the relative-position terms and the softmax run on `S` in cache, and
//!   `S·V` is written straight into the head's columns of the output: no copy at all;
//! - **windowed attention**: for each image and band of windows, each window and head, K and V
//!   of the window (padded positions from the projection of a zero token, as the padded
//!   reference computes them) and its real queries are gathered into small buffers, then the
//!   same three steps run and the real queries' outputs are written into the token map.
//!
//! Every product runs on the calling thread (`gemm` without threads); the parallelism is over
//! images and blocks of queries. [`WindowAttentionOp`] wraps the kernel as a candle op whose
//! backward pass ([`WindowAttention::backward`]) recomputes each window's probabilities, so
//! training takes it too. Other dtypes and devices use the candle composition, which is also
//! this kernel's oracle in the tests.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use masam_nn::gemm::{gemm_with, Mat, MatMut};
use masam_nn::ops::softmax_row;

/// Query rows per task of global attention (`S` is rows × H·W floats: 512 KiB at 32 × 32).
const GLOBAL_QUERY_BLOCK: usize = 128;

/// What the kernel computes on: borrowed `f32` buffers and the geometry.
pub(crate) struct WindowAttention<'a> {
    /// (B, H, W, 3C): q, k, v channel blocks, each `heads × head_dim`.
    pub(crate) qkv: &'a [f32],
    /// (3C): the qkv projection of a zero token (the padded positions); needed only when the
    /// windows do not tile the map.
    pub(crate) pad: Option<&'a [f32]>,
    /// (B, H, W) of the token map.
    pub(crate) dims: (usize, usize, usize),
    /// Number of heads and channels per head (C = heads × head_dim).
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    /// Window side; 0 for global attention.
    pub(crate) window: usize,
    /// Logit scale (`head_dim^-1/2`).
    pub(crate) scale: f32,
    /// SAM's relative-position embeddings of the whole window, `Rh` (wh, wh, hd) and `Rw`
    /// (ww, ww, hd) ([`crate::rel_pos::get_rel_pos`]).
    pub(crate) rel: Option<(&'a [f32], &'a [f32])>,
}

/// Where a block of queries sits: its rows in the window and its key grid.
struct Block<'a> {
    /// Number of query rows and keys.
    nq: usize,
    keys: usize,
    /// Key grid (kh rows × kw columns) of the window.
    kw: usize,
    /// Query row `r` is the window's query number `first + r`, at window row
    /// `(first + r) / qw` and column `(first + r) % qw` (`qw`: real query columns).
    first: usize,
    qw: usize,
    /// Scratch: logits (nq × keys), one row of biased logits, the relative-position terms
    /// (nq × kh and nq × kw).
    s: &'a mut Vec<f32>,
    row: &'a mut Vec<f32>,
    bh: Vec<f32>,
    bw: Vec<f32>,
}

impl WindowAttention<'_> {
    /// The window's extent (rows, columns): the whole map for global attention. `None` when
    /// the buffers do not fit the geometry (qkv size, a padding projection where the windows do
    /// not tile the map, relative-position embeddings of the window's size).
    fn window_extent(&self) -> Option<(usize, usize)> {
        let (b, h, w) = self.dims;
        let (hd, c3) = (self.head_dim, 3 * self.heads * self.head_dim);
        let (wh, ww) = if self.window == 0 {
            (h, w)
        } else {
            (self.window, self.window)
        };
        let tiles = h.is_multiple_of(wh) && w.is_multiple_of(ww);
        let fits = self.qkv.len() == b * h * w * c3
            && (tiles || self.pad.is_some_and(|p| p.len() == c3))
            && self
                .rel
                .is_none_or(|(rh, rw)| rh.len() == wh * wh * hd && rw.len() == ww * ww * hd);
        fits.then_some((wh, ww))
    }

    /// Copies the keys and values of head `head` of the (wh × ww) window at (`y0`, `x0`) of
    /// image `bi` into `k` and `v` (keys × hd each); positions outside the map take the
    /// padding projection.
    #[allow(clippy::too_many_arguments)]
    fn gather_keys(
        &self,
        bi: usize,
        (y0, x0): (usize, usize),
        (wh, ww): (usize, usize),
        head: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) {
        let (_, h, w) = self.dims;
        let (hd, c) = (self.head_dim, self.heads * self.head_dim);
        let (kc, vc) = (c + head * hd, 2 * c + head * hd);
        for ki in 0..wh {
            for kj in 0..ww {
                let (y, x) = (y0 + ki, x0 + kj);
                let (src, off) = if y < h && x < w {
                    (self.qkv, ((bi * h + y) * w + x) * 3 * c)
                } else {
                    (self.pad.unwrap_or(&[]), 0)
                };
                let dst = (ki * ww + kj) * hd;
                k[dst..dst + hd].copy_from_slice(&src[off + kc..off + kc + hd]);
                v[dst..dst + hd].copy_from_slice(&src[off + vc..off + vc + hd]);
            }
        }
    }

    /// Copies the `hd` channels at `col` of the (qh × qw) real queries of the window at (`y0`,
    /// `x0`) of image `bi` out of `src`, a token map with `width` channels per token, into
    /// `dst` (one row per query).
    #[allow(clippy::too_many_arguments)]
    fn gather_queries(
        &self,
        src: &[f32],
        width: usize,
        bi: usize,
        (y0, x0): (usize, usize),
        (qh, qw): (usize, usize),
        col: usize,
        dst: &mut [f32],
    ) {
        let (_, h, w) = self.dims;
        let hd = self.head_dim;
        for i in 0..qh {
            for j in 0..qw {
                let off = ((bi * h + y0 + i) * w + x0 + j) * width + col;
                let d = (i * qw + j) * hd;
                dst[d..d + hd].copy_from_slice(&src[off..off + hd]);
            }
        }
    }

    /// Runs the kernel; returns the attention output (B, H, W, C) before the output projection,
    /// or `None` when the buffers do not fit the geometry (the caller then composes candle ops,
    /// which report the problem).
    pub(crate) fn run(&self) -> Option<Vec<f32>> {
        let (b, h, w) = self.dims;
        let c = self.heads * self.head_dim;
        let (wh, _) = self.window_extent()?;
        let win = self.window;
        let mut out = vec![0f32; b * h * w * c];
        if out.is_empty() {
            return Some(out);
        }
        if win == 0 {
            out.par_chunks_mut(h * w * c)
                .enumerate()
                .for_each(|(bi, image)| {
                    image
                        .par_chunks_mut(GLOBAL_QUERY_BLOCK * c)
                        .enumerate()
                        .for_each(|(qb, rows)| {
                            self.global_block(bi, qb * GLOBAL_QUERY_BLOCK, rows)
                        });
                });
        } else {
            out.par_chunks_mut(h * w * c)
                .enumerate()
                .for_each(|(bi, image)| {
                    image
                        .par_chunks_mut(wh * w * c)
                        .enumerate()
                        .for_each(|(band, rows)| self.window_band(bi, band * wh, rows));
                });
        }
        Some(out)
    }

    /// Global attention for the query rows `first..` of image `bi` (`rows`: their outputs).
    fn global_block(&self, bi: usize, first: usize, rows: &mut [f32]) {
        let (_, h, w) = self.dims;
        let (hd, c) = (self.head_dim, self.heads * self.head_dim);
        let c3 = 3 * c;
        let nq = rows.len() / c;
        let base = bi * h * w * c3;
        let (mut s, mut row) = (Vec::new(), Vec::new());
        for head in 0..self.heads {
            let col = head * hd;
            let q = Mat {
                data: self.qkv,
                off: base + first * c3 + col,
                rs: c3,
                cs: 1,
            };
            // Kᵀ (hd × keys) read in place
            let kt = Mat {
                data: self.qkv,
                off: base + c + col,
                rs: 1,
                cs: c3,
            };
            let v = Mat {
                data: self.qkv,
                off: base + 2 * c + col,
                rs: c3,
                cs: 1,
            };
            let out = MatMut {
                data: rows,
                off: col,
                rs: c,
                cs: 1,
            };
            let mut blk = Block {
                nq,
                keys: h * w,
                kw: w,
                first,
                qw: w,
                s: &mut s,
                row: &mut row,
                bh: Vec::new(),
                bw: Vec::new(),
            };
            self.attend(&mut blk, q, kt, v, out);
        }
    }

    /// Windowed attention for the band of windows whose first token row is `y0` in image `bi`
    /// (`rows`: the band's rows of the output map).
    fn window_band(&self, bi: usize, y0: usize, rows: &mut [f32]) {
        let (_, h, w) = self.dims;
        let (hd, c, win) = (self.head_dim, self.heads * self.head_dim, self.window);
        let c3 = 3 * c;
        let keys = win * win;
        let qh = win.min(h - y0);
        let (mut qs, mut ks, mut vs) = (Vec::new(), vec![0f32; keys * hd], vec![0f32; keys * hd]);
        let (mut os, mut s, mut row) = (Vec::new(), Vec::new(), Vec::new());
        for x0 in (0..w).step_by(win) {
            let qw = win.min(w - x0);
            let nq = qh * qw;
            qs.resize(nq * hd, 0.0);
            os.resize(nq * hd, 0.0);
            for head in 0..self.heads {
                let col = head * hd;
                // the window's keys and values (padding from the zero token) and real queries
                self.gather_keys(bi, (y0, x0), (win, win), head, &mut ks, &mut vs);
                self.gather_queries(self.qkv, c3, bi, (y0, x0), (qh, qw), col, &mut qs);
                let mut blk = Block {
                    nq,
                    keys,
                    kw: win,
                    first: 0,
                    qw,
                    s: &mut s,
                    row: &mut row,
                    bh: Vec::new(),
                    bw: Vec::new(),
                };
                self.attend(
                    &mut blk,
                    Mat {
                        data: &qs,
                        off: 0,
                        rs: hd,
                        cs: 1,
                    },
                    Mat {
                        data: &ks,
                        off: 0,
                        rs: 1,
                        cs: hd,
                    },
                    Mat {
                        data: &vs,
                        off: 0,
                        rs: hd,
                        cs: 1,
                    },
                    MatMut::rows(&mut os, 0, hd),
                );
                for i in 0..qh {
                    for j in 0..qw {
                        let src = (i * qw + j) * hd;
                        let dst = (i * w + x0 + j) * c + col;
                        rows[dst..dst + hd].copy_from_slice(&os[src..src + hd]);
                    }
                }
            }
        }
    }

    /// SAM's decomposed relative-position terms of a block of queries, as small GEMMs:
    /// `bh[r, ki] = q_r · Rh[i_r, ki]` over the queries of each window row `i` (consecutive rows
    /// of the block) and `bw[r, kj] = q_r · Rw[j_r, kj]` over those of each column `j` (every
    /// `qw`-th row).
    fn rel_terms(&self, blk: &mut Block, q: Mat, (rh, rw): (&[f32], &[f32]), kh: usize) {
        let (nq, kw, qw, hd) = (blk.nq, blk.kw, blk.qw, self.head_dim);
        blk.bh.resize(nq * kh, 0.0);
        blk.bw.resize(nq * kw, 0.0);
        // rows of the block with the same window row i are consecutive
        let mut r = 0;
        while r < nq {
            let p = blk.first + r;
            let (i, j) = (p / qw, p % qw);
            let len = (qw - j).min(nq - r);
            gemm_with(
                len,
                kh,
                hd,
                MatMut::rows(&mut blk.bh, r * kh, kh),
                Mat {
                    off: q.off + r * q.rs,
                    ..q
                },
                Mat {
                    data: rh,
                    off: i * kh * hd,
                    rs: 1,
                    cs: hd,
                },
                false,
                1.0,
                false,
            );
            r += len;
        }
        // rows with the same column j are qw apart
        for r0 in 0..qw.min(nq) {
            let j = (blk.first + r0) % qw;
            let len = (nq - r0).div_ceil(qw);
            gemm_with(
                len,
                kw,
                hd,
                MatMut::rows(&mut blk.bw, r0 * kw, qw * kw),
                Mat {
                    off: q.off + r0 * q.rs,
                    rs: qw * q.rs,
                    ..q
                },
                Mat {
                    data: rw,
                    off: j * kw * hd,
                    rs: 1,
                    cs: hd,
                },
                false,
                1.0,
                false,
            );
        }
    }

    /// `out = softmax(scale·Q·Kᵀ + rel_h + rel_w)·V` for one block of queries and one head.
    fn attend(&self, blk: &mut Block, q: Mat, kt: Mat, v: Mat, out: MatMut) {
        self.probabilities(blk, q, kt);
        let (nq, keys, hd) = (blk.nq, blk.keys, self.head_dim);
        gemm_with(
            nq,
            hd,
            keys,
            out,
            Mat {
                data: blk.s,
                off: 0,
                rs: keys,
                cs: 1,
            },
            v,
            false,
            1.0,
            false,
        );
    }

    /// `blk.s = softmax(scale·Q·Kᵀ + rel_h + rel_w)` (nq × keys) for one block of queries and
    /// one head.
    fn probabilities(&self, blk: &mut Block, q: Mat, kt: Mat) {
        let (nq, keys, hd) = (blk.nq, blk.keys, self.head_dim);
        blk.s.resize(nq * keys, 0.0);
        blk.row.resize(keys, 0.0);
        gemm_with(
            nq,
            keys,
            hd,
            MatMut::rows(blk.s, 0, keys),
            q,
            kt,
            false,
            self.scale,
            false,
        );
        let kw = blk.kw;
        let kh = keys / kw.max(1);
        if let Some((rh, rw)) = self.rel {
            self.rel_terms(blk, q, (rh, rw), kh);
        }
        let (bh, bw) = (&blk.bh, &blk.bw);
        for r in 0..nq {
            let logits = &mut blk.s[r * keys..(r + 1) * keys];
            if self.rel.is_some() {
                let (hr, wr) = (&bh[r * kh..(r + 1) * kh], &bw[r * kw..(r + 1) * kw]);
                for (ki, &hv) in hr.iter().enumerate() {
                    let src = &logits[ki * kw..(ki + 1) * kw];
                    let dst = &mut blk.row[ki * kw..(ki + 1) * kw];
                    for ((o, &a), &wv) in dst.iter_mut().zip(src).zip(wr) {
                        *o = a + hv + wv;
                    }
                }
            } else {
                blk.row.copy_from_slice(logits);
            }
            softmax_row(blk.row, logits);
        }
    }
}

/// One window (or the whole map, for global attention) and one head: the unit of work of the
/// backward pass.
struct Task {
    b: usize,
    y0: usize,
    x0: usize,
    head: usize,
}

/// What one task contributes to the gradients: dQ of its real queries (nq × hd), dK and dV of
/// its keys (keys × hd, padded positions included), and its parts of dRh and dRw.
struct TaskGrads {
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    drh: Vec<f32>,
    drw: Vec<f32>,
}

/// The gradients of [`WindowAttention::run`]'s output with respect to its inputs.
pub(crate) struct AttentionGrads {
    /// (B, H, W, 3C), like the qkv input.
    pub(crate) dqkv: Vec<f32>,
    /// (3C): the sum over every padded key/value position (the padded token's q never enters).
    pub(crate) dpad: Vec<f32>,
    /// `dRh` then `dRw`, flattened, like the `rel` input (empty without relative positions).
    pub(crate) drel: Vec<f32>,
}

impl WindowAttention<'_> {
    /// The tasks of the backward pass, for windows of extent (`wh`, `ww`).
    fn tasks(&self, (wh, ww): (usize, usize)) -> Vec<Task> {
        let (b, h, w) = self.dims;
        let mut tasks = Vec::new();
        for bi in 0..b {
            for y0 in (0..h).step_by(wh) {
                for x0 in (0..w).step_by(ww) {
                    for head in 0..self.heads {
                        tasks.push(Task {
                            b: bi,
                            y0,
                            x0,
                            head,
                        });
                    }
                }
            }
        }
        tasks
    }

    /// The backward pass for the output gradient `grad` (B, H, W, C): recomputes each window's
    /// probabilities, then `dV = Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ − rowsum)`, `dQ = scale·dS·K` plus
    /// the relative-position terms' share, `dK = scale·dSᵀ·Q`, and `dRh`, `dRw`. Tasks run in
    /// parallel; their contributions are added in a fixed order (the same bits on any number of
    /// threads). `None` when the buffers do not fit the geometry.
    pub(crate) fn backward(&self, grad: &[f32]) -> Option<AttentionGrads> {
        let (b, h, w) = self.dims;
        let (hd, c) = (self.head_dim, self.heads * self.head_dim);
        let c3 = 3 * c;
        let (wh, ww) = self.window_extent()?;
        if grad.len() != b * h * w * c {
            return None;
        }
        let tasks = self.tasks((wh, ww));
        let parts: Vec<TaskGrads> = tasks
            .par_iter()
            .map(|t| self.task_backward(t, (wh, ww), grad))
            .collect();
        let mut dqkv = vec![0f32; b * h * w * c3];
        let mut dpad = vec![0f32; c3];
        let (lh, lw) = (wh * wh * hd, ww * ww * hd);
        let mut drel = vec![0f32; if self.rel.is_some() { lh + lw } else { 0 }];
        for (t, g) in tasks.iter().zip(&parts) {
            let col = t.head * hd;
            let (qh, qw) = (wh.min(h - t.y0), ww.min(w - t.x0));
            for i in 0..qh {
                for j in 0..qw {
                    let dst = ((t.b * h + t.y0 + i) * w + t.x0 + j) * c3 + col;
                    let src = (i * qw + j) * hd;
                    dqkv[dst..dst + hd].copy_from_slice(&g.dq[src..src + hd]);
                }
            }
            for ki in 0..wh {
                for kj in 0..ww {
                    let (y, x) = (t.y0 + ki, t.x0 + kj);
                    let src = (ki * ww + kj) * hd;
                    let (buf, base) = if y < h && x < w {
                        (&mut dqkv, ((t.b * h + y) * w + x) * c3)
                    } else {
                        (&mut dpad, 0)
                    };
                    let kd = base + c + col;
                    let vd = base + 2 * c + col;
                    add_into(&mut buf[kd..kd + hd], &g.dk[src..src + hd]);
                    add_into(&mut buf[vd..vd + hd], &g.dv[src..src + hd]);
                }
            }
            if self.rel.is_some() {
                add_into(&mut drel[..lh], &g.drh);
                add_into(&mut drel[lh..], &g.drw);
            }
        }
        Some(AttentionGrads { dqkv, dpad, drel })
    }

    /// One task of [`backward`](Self::backward).
    fn task_backward(&self, t: &Task, (wh, ww): (usize, usize), grad: &[f32]) -> TaskGrads {
        let (_, h, w) = self.dims;
        let (hd, c) = (self.head_dim, self.heads * self.head_dim);
        let c3 = 3 * c;
        let col = t.head * hd;
        let (qh, qw) = (wh.min(h - t.y0), ww.min(w - t.x0));
        let (nq, keys) = (qh * qw, wh * ww);
        // Q and dO of the real queries, K and V of the whole window (padding included)
        let (mut q, mut dout) = (vec![0f32; nq * hd], vec![0f32; nq * hd]);
        let corner = (t.y0, t.x0);
        self.gather_queries(self.qkv, c3, t.b, corner, (qh, qw), col, &mut q);
        self.gather_queries(grad, c, t.b, corner, (qh, qw), col, &mut dout);
        let (mut k, mut v) = (vec![0f32; keys * hd], vec![0f32; keys * hd]);
        self.gather_keys(t.b, corner, (wh, ww), t.head, &mut k, &mut v);
        // P, recomputed as the forward pass computes it
        let (mut s, mut row) = (Vec::new(), Vec::new());
        let mut blk = Block {
            nq,
            keys,
            kw: ww,
            first: 0,
            qw,
            s: &mut s,
            row: &mut row,
            bh: Vec::new(),
            bw: Vec::new(),
        };
        self.probabilities(&mut blk, mat(&q, hd, 1), mat(&k, 1, hd));
        let p = &*blk.s;
        // dV = Pᵀ·dO
        let mut dv = vec![0f32; keys * hd];
        gemm_with(
            keys,
            hd,
            nq,
            MatMut::rows(&mut dv, 0, hd),
            mat(p, 1, keys),
            mat(&dout, hd, 1),
            false,
            1.0,
            false,
        );
        // dS = P ⊙ (dO·Vᵀ − Σ_k P·(dO·Vᵀ)), row by row
        let mut ds = vec![0f32; nq * keys];
        gemm_with(
            nq,
            keys,
            hd,
            MatMut::rows(&mut ds, 0, keys),
            mat(&dout, hd, 1),
            mat(&v, 1, hd),
            false,
            1.0,
            false,
        );
        for (dr, pr) in ds.chunks_exact_mut(keys).zip(p.chunks_exact(keys)) {
            let dot = masam_nn::ops::dot(dr, pr);
            for (d, &pv) in dr.iter_mut().zip(pr) {
                *d = pv * (*d - dot);
            }
        }
        // dQ = scale·dS·K, dK = scale·dSᵀ·Q
        let mut dq = vec![0f32; nq * hd];
        gemm_with(
            nq,
            hd,
            keys,
            MatMut::rows(&mut dq, 0, hd),
            mat(&ds, keys, 1),
            mat(&k, hd, 1),
            false,
            self.scale,
            false,
        );
        let mut dk = vec![0f32; keys * hd];
        gemm_with(
            keys,
            hd,
            nq,
            MatMut::rows(&mut dk, 0, hd),
            mat(&ds, 1, keys),
            mat(&q, hd, 1),
            false,
            self.scale,
            false,
        );
        let (mut drh, mut drw) = (Vec::new(), Vec::new());
        if let Some((rh, rw)) = self.rel {
            let (kh, kw) = (wh, ww);
            // dbh[r, ki] = Σ_kj dS[r, ki·kw + kj], dbw[r, kj] = Σ_ki dS[r, ki·kw + kj]
            let (mut dbh, mut dbw) = (vec![0f32; nq * kh], vec![0f32; nq * kw]);
            for r in 0..nq {
                let dr = &ds[r * keys..(r + 1) * keys];
                let (hrow, wrow) = (
                    &mut dbh[r * kh..(r + 1) * kh],
                    &mut dbw[r * kw..(r + 1) * kw],
                );
                for (ki, hv) in hrow.iter_mut().enumerate() {
                    let seg = &dr[ki * kw..(ki + 1) * kw];
                    *hv = masam_nn::ops::sum(seg);
                    for (wv, &d) in wrow.iter_mut().zip(seg) {
                        *wv += d;
                    }
                }
            }
            drh = vec![0f32; wh * kh * hd];
            drw = vec![0f32; ww * kw * hd];
            // window row i: its queries are rows i·qw .. i·qw + qw
            for i in 0..qh {
                let r0 = i * qw;
                // dQ[r] += Σ_ki dbh[r, ki]·Rh[i, ki]
                gemm_with(
                    qw,
                    hd,
                    kh,
                    MatMut::rows(&mut dq, r0 * hd, hd),
                    Mat {
                        data: &dbh,
                        off: r0 * kh,
                        rs: kh,
                        cs: 1,
                    },
                    Mat {
                        data: rh,
                        off: i * kh * hd,
                        rs: hd,
                        cs: 1,
                    },
                    true,
                    1.0,
                    false,
                );
                // dRh[i, ki] += Σ_r dbh[r, ki]·q_r
                gemm_with(
                    kh,
                    hd,
                    qw,
                    MatMut::rows(&mut drh, i * kh * hd, hd),
                    Mat {
                        data: &dbh,
                        off: r0 * kh,
                        rs: 1,
                        cs: kh,
                    },
                    Mat {
                        data: &q,
                        off: r0 * hd,
                        rs: hd,
                        cs: 1,
                    },
                    true,
                    1.0,
                    false,
                );
            }
            // window column j: its queries are rows j, j + qw, …
            for j in 0..qw {
                gemm_with(
                    qh,
                    hd,
                    kw,
                    MatMut {
                        data: &mut dq,
                        off: j * hd,
                        rs: qw * hd,
                        cs: 1,
                    },
                    Mat {
                        data: &dbw,
                        off: j * kw,
                        rs: qw * kw,
                        cs: 1,
                    },
                    Mat {
                        data: rw,
                        off: j * kw * hd,
                        rs: hd,
                        cs: 1,
                    },
                    true,
                    1.0,
                    false,
                );
                gemm_with(
                    kw,
                    hd,
                    qh,
                    MatMut::rows(&mut drw, j * kw * hd, hd),
                    Mat {
                        data: &dbw,
                        off: j * kw,
                        rs: 1,
                        cs: qw * kw,
                    },
                    Mat {
                        data: &q,
                        off: j * hd,
                        rs: qw * hd,
                        cs: 1,
                    },
                    true,
                    1.0,
                    false,
                );
            }
        }
        TaskGrads {
            dq,
            dk,
            dv,
            drh,
            drw,
        }
    }
}

/// A strided view of a whole buffer.
fn mat(data: &[f32], rs: usize, cs: usize) -> Mat<'_> {
    Mat {
        data,
        off: 0,
        rs,
        cs,
    }
}

/// `a += b` element-wise.
fn add_into(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// [`WindowAttention`] as a candle op with inputs `(qkv, pad, rel)`: the forward pass is
/// [`WindowAttention::run`], the backward pass [`WindowAttention::backward`]. `pad` is the
/// (3C) projection of a zero token (or a 1-element placeholder when the windows tile the map),
/// `rel` the flattened `Rh` then `Rw` (or a 1-element placeholder without relative positions).
/// CPU `f32` only.
pub(crate) struct WindowAttentionOp {
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) window: usize,
    pub(crate) scale: f32,
    pub(crate) has_pad: bool,
    pub(crate) has_rel: bool,
}

/// The contiguous `f32` elements of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    masam_nn::ops::contiguous_f32(s, l, "window attention")
}

impl WindowAttentionOp {
    /// The kernel over borrowed buffers; `dims` are (B, H, W, 3C) of qkv.
    fn kernel<'a>(
        &self,
        dims: &[usize],
        qkv: &'a [f32],
        pad: &'a [f32],
        rel: &'a [f32],
    ) -> candle_core::Result<WindowAttention<'a>> {
        let [b, h, w, c3] = *dims else {
            candle_core::bail!("window attention: qkv must be (B, H, W, 3C), got {dims:?}");
        };
        if c3 != 3 * self.heads * self.head_dim {
            candle_core::bail!(
                "window attention: qkv has {c3} channels, expected 3·heads·head_dim"
            );
        }
        let wh = if self.window == 0 { h } else { self.window };
        let lh = wh * wh * self.head_dim;
        let rel = match self.has_rel {
            true if rel.len() > lh => Some(rel.split_at(lh)),
            true => candle_core::bail!("window attention: relative positions too short"),
            false => None,
        };
        Ok(WindowAttention {
            qkv,
            pad: self.has_pad.then_some(pad),
            dims: (b, h, w),
            heads: self.heads,
            head_dim: self.head_dim,
            window: self.window,
            scale: self.scale,
            rel,
        })
    }
}

impl CustomOp3 for WindowAttentionOp {
    fn name(&self) -> &'static str {
        "masam-window-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (qkv, pad, rel) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let dims = l1.dims();
        let kernel = self.kernel(dims, qkv, pad, rel)?;
        let Some(out) = kernel.run() else {
            candle_core::bail!("window attention: inputs do not fit the geometry ({dims:?})");
        };
        let c = self.heads * self.head_dim;
        Ok((
            CpuStorage::F32(out),
            Shape::from((dims[0], dims[1], dims[2], c)),
        ))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        pad: &Tensor,
        rel: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (pad_v, rel_v) = (
            pad.flatten_all()?.to_vec1::<f32>()?,
            rel.flatten_all()?.to_vec1::<f32>()?,
        );
        let (qs, ql) = qkv.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (Storage::Cpu(qs), Storage::Cpu(gs)) = (&*qs, &*gs) else {
            candle_core::bail!("window attention: the backward pass runs on the CPU");
        };
        let kernel = self.kernel(qkv.dims(), f32_slice(qs, ql)?, &pad_v, &rel_v)?;
        let Some(g) = kernel.backward(f32_slice(gs, gl)?) else {
            candle_core::bail!("window attention: gradient does not fit the geometry");
        };
        let dev = qkv.device();
        let dqkv = Tensor::from_vec(g.dqkv, qkv.shape(), dev)?;
        let dpad = if self.has_pad && pad.track_op() {
            Some(Tensor::from_vec(g.dpad, pad.shape(), dev)?)
        } else {
            None
        };
        let drel = if self.has_rel && rel.track_op() {
            Some(Tensor::from_vec(g.drel, rel.shape(), dev)?)
        } else {
            None
        };
        Ok((qkv.track_op().then_some(dqkv), dpad, drel))
    }
}
