//! The CPU inference kernel of SAM's windowed (and global) attention: `f32`, no graph.
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
//! images and blocks of queries. Inputs that take part in a graph, other dtypes and other
//! devices use the candle composition, which is also this kernel's oracle in the tests.

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
    /// Window coordinates (i, j) of query row `r` are `pos(r)`.
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
    /// Runs the kernel; returns the attention output (B, H, W, C) before the output projection,
    /// or `None` when the buffers do not fit the geometry (the caller then composes candle ops,
    /// which report the problem).
    pub(crate) fn run(&self) -> Option<Vec<f32>> {
        let (b, h, w) = self.dims;
        let (hd, c) = (self.head_dim, self.heads * self.head_dim);
        let win = self.window;
        let tiles = win == 0 || (h.is_multiple_of(win) && w.is_multiple_of(win));
        let (wh, ww) = if win == 0 { (h, w) } else { (win, win) };
        let fits = self.qkv.len() == b * h * w * 3 * c
            && (tiles || self.pad.is_some_and(|p| p.len() == 3 * c))
            && self
                .rel
                .is_none_or(|(rh, rw)| rh.len() == wh * wh * hd && rw.len() == ww * ww * hd);
        if !fits {
            return None;
        }
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
                // gather the window's keys and values (padding from the zero token) and queries
                for ki in 0..win {
                    for kj in 0..win {
                        let (y, x) = (y0 + ki, x0 + kj);
                        let dst = (ki * win + kj) * hd;
                        let (src, off) = if y < h && x < w {
                            (self.qkv, ((bi * h + y) * w + x) * c3)
                        } else {
                            (self.pad.unwrap_or(&[]), 0)
                        };
                        ks[dst..dst + hd].copy_from_slice(&src[off + c + col..off + c + col + hd]);
                        vs[dst..dst + hd]
                            .copy_from_slice(&src[off + 2 * c + col..off + 2 * c + col + hd]);
                    }
                }
                for i in 0..qh {
                    for j in 0..qw {
                        let off = ((bi * h + y0 + i) * w + x0 + j) * c3 + col;
                        let dst = (i * qw + j) * hd;
                        qs[dst..dst + hd].copy_from_slice(&self.qkv[off..off + hd]);
                    }
                }
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
}
