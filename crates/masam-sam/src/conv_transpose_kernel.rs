//! The CPU kernel of [`conv_transpose_2x2_nhwc`](crate::mask_decoder::conv_transpose_2x2_nhwc)
//! for `f32`: `ConvTranspose2d(kernel 2, stride 2)` on channels-last maps as small GEMMs that
//! write the interleaved output in place, with its backward pass.
//!
//! Input pixel (i, j) of image n produces output pixels (2i + a, 2j + b) for the four taps
//! (a, b). For one input row (n, i) and one tap row a, the outputs of all its pixels lie in
//! output row 2i + a, `2·Cout` consecutive values per input pixel (the taps b = 0, 1 side by
//! side): a (W × 2·Cout) block with row stride 2·Cout, which is `X_row · W_a` for the
//! (Cin × 2·Cout) slice `W_a` of the weight rearranged to (Cin, a, b, Cout). So each input
//! row is two GEMMs into the bias-filled output; the gradients are GEMMs over the same blocks:
//! `dX_row = Σ_a dY_a · W_aᵀ`, `dW_a = Σ_rows X_rowᵀ · dY_a`, and the bias gradient is a
//! column sum. The composition it replaces (a matmul, then reshape, permute and a copy back to
//! channels-last) recorded four graph nodes of the output's size, whose gradients the backward
//! pass zero-fills, copies and accumulates; this is one node and no copy.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use masam_nn::gemm::{gemm_with, Mat, MatMut};
use masam_nn::ops::with_f32;
use rayon::prelude::*;

/// Input rows per task of the weight gradient: fixed, so the sum does not depend on the
/// number of threads.
const ROWS_PER_PARTIAL: usize = 8;

/// Sizes of one transposed convolution: batch, input height and width, channels in and out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvTranspose2x2 {
    pub(crate) n: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) cin: usize,
    pub(crate) cout: usize,
}

impl ConvTranspose2x2 {
    /// Values of one output row pair (2i, 2i + 1): two rows of 2W pixels.
    fn out_row_pair(&self) -> usize {
        4 * self.w * self.cout
    }

    /// The weight (Cin, Cout, 2, 2) rearranged to (Cin, a, b, Cout).
    fn taps_last(&self, w: &[f32]) -> Vec<f32> {
        let (ci, co) = (self.cin, self.cout);
        let mut wr = vec![0f32; ci * 4 * co];
        for c in 0..ci {
            for o in 0..co {
                for tap in 0..4 {
                    wr[(c * 4 + tap) * co + o] = w[(c * co + o) * 4 + tap];
                }
            }
        }
        wr
    }

    /// `y = convT(x) + b`, (N, 2H, 2W, Cout).
    pub(crate) fn forward(&self, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let (wd, ci, co) = (self.w, self.cin, self.cout);
        let wr = self.taps_last(w);
        let pair = self.out_row_pair();
        let len = self.n * self.h * pair;
        let mut y: Vec<f32> = masam_nn::ops::fill_rows_f32(len, b);
        if len == 0 {
            return y;
        }
        y.par_chunks_mut(pair).enumerate().for_each(|(r, out)| {
            for a in 0..2 {
                gemm_with(
                    wd,
                    2 * co,
                    ci,
                    MatMut::rows(out, a * 2 * wd * co, 2 * co),
                    Mat {
                        data: x,
                        off: r * wd * ci,
                        rs: ci,
                        cs: 1,
                    },
                    Mat {
                        data: &wr,
                        off: a * 2 * co,
                        rs: 4 * co,
                        cs: 1,
                    },
                    true,
                    1.0,
                    false,
                );
            }
        });
        y
    }

    /// `dL/dx` (N, H, W, Cin).
    pub(crate) fn input_grad(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let (wd, ci, co) = (self.w, self.cin, self.cout);
        let wr = self.taps_last(w);
        let pair = self.out_row_pair();
        let mut dx = vec![0f32; self.n * self.h * wd * ci];
        if dx.is_empty() || co == 0 {
            return dx;
        }
        dx.par_chunks_mut(wd * ci).enumerate().for_each(|(r, out)| {
            for a in 0..2 {
                gemm_with(
                    wd,
                    ci,
                    2 * co,
                    MatMut::rows(out, 0, ci),
                    Mat {
                        data: dy,
                        off: r * pair + a * 2 * wd * co,
                        rs: 2 * co,
                        cs: 1,
                    },
                    // W_aᵀ (2·Cout × Cin), read in place
                    Mat {
                        data: &wr,
                        off: a * 2 * co,
                        rs: 1,
                        cs: 4 * co,
                    },
                    true,
                    1.0,
                    false,
                );
            }
        });
        dx
    }

    /// `dL/dW` (Cin, Cout, 2, 2): per-block partial sums over fixed blocks of input rows,
    /// added in block order.
    pub(crate) fn weight_grad(&self, dy: &[f32], x: &[f32]) -> Vec<f32> {
        let (wd, ci, co) = (self.w, self.cin, self.cout);
        let pair = self.out_row_pair();
        let rows = self.n * self.h;
        let partials: Vec<Vec<f32>> = (0..rows.div_ceil(ROWS_PER_PARTIAL))
            .into_par_iter()
            .map(|blk| {
                let mut acc = vec![0f32; ci * 4 * co];
                let end = rows.min((blk + 1) * ROWS_PER_PARTIAL);
                for r in blk * ROWS_PER_PARTIAL..end {
                    for a in 0..2 {
                        gemm_with(
                            ci,
                            2 * co,
                            wd,
                            MatMut::rows(&mut acc, a * 2 * co, 4 * co),
                            // X_rowᵀ (Cin × W)
                            Mat {
                                data: x,
                                off: r * wd * ci,
                                rs: 1,
                                cs: ci,
                            },
                            Mat {
                                data: dy,
                                off: r * pair + a * 2 * wd * co,
                                rs: 2 * co,
                                cs: 1,
                            },
                            true,
                            1.0,
                            false,
                        );
                    }
                }
                acc
            })
            .collect();
        let mut wr = vec![0f32; ci * 4 * co];
        for p in &partials {
            for (t, v) in wr.iter_mut().zip(p) {
                *t += v;
            }
        }
        // (Cin, a, b, Cout) back to (Cin, Cout, a, b)
        let mut dw = vec![0f32; ci * co * 4];
        for c in 0..ci {
            for o in 0..co {
                for tap in 0..4 {
                    dw[(c * co + o) * 4 + tap] = wr[(c * 4 + tap) * co + o];
                }
            }
        }
        dw
    }
}

/// The op: inputs `(x, weight, bias)`.
pub(crate) struct ConvTranspose2x2Op(pub(crate) ConvTranspose2x2);

/// The contiguous `f32` elements of a CPU storage.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    masam_nn::ops::contiguous_f32(s, l, OP)
}

const OP: &str = "conv_transpose_2x2_nhwc";

impl CustomOp3 for ConvTranspose2x2Op {
    fn name(&self) -> &'static str {
        "masam-conv-transpose-2x2-nhwc"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let y = g.forward(f32s(xs, xl)?, f32s(ws, wl)?, f32s(bs, bl)?);
        Ok((
            CpuStorage::F32(y),
            Shape::from((g.n, 2 * g.h, 2 * g.w, g.cout)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        // each gradient only for an input that tracks, as a tensor shaped like it
        let grad_of = |like: &Tensor, compute: &dyn Fn() -> Result<Vec<f32>>| {
            like.track_op()
                .then(|| Tensor::from_vec(compute()?, like.shape(), like.device()))
                .transpose()
        };
        with_f32(grad, OP, |dy| {
            Ok((
                grad_of(x, &|| with_f32(w, OP, |w| g.input_grad(dy, w)))?,
                grad_of(w, &|| with_f32(x, OP, |x| g.weight_grad(dy, x)))?,
                grad_of(b, &|| Ok(masam_nn::ops::column_sums(dy, g.cout)))?,
            ))
        })?
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Result, Tensor, Var};
    use masam_testkit::rel_err;

    use crate::mask_decoder::conv_transpose_2x2_nhwc;

    /// Values and all three gradients against candle's `conv_transpose2d` (NCHW) plus a bias,
    /// over shapes with one and several images, rows and channels; a frozen weight gets no
    /// gradient; the op is one node between its inputs and its output.
    #[test]
    fn matches_candle_conv_transpose2d_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (n, h, w, cin, cout) in [
            (1usize, 1usize, 1usize, 1usize, 1usize),
            (2, 3, 5, 4, 3),
            (3, 8, 8, 16, 8),
            (1, 17, 9, 64, 32),
        ] {
            for trainable in [true, false] {
                let x = Var::from_tensor(&Tensor::randn(0f32, 1., (n, h, w, cin), &dev)?)?;
                let w0 = Tensor::randn(0f32, 0.5, (cin, cout, 2, 2), &dev)?;
                let wv = Var::from_tensor(&w0)?;
                let wt = if trainable {
                    wv.as_tensor().clone()
                } else {
                    w0.clone()
                };
                let b = Var::from_tensor(&Tensor::randn(0f32, 1., cout, &dev)?)?;
                let g = Tensor::randn(0f32, 1., (n, 2 * h, 2 * w, cout), &dev)?;

                let ours = conv_transpose_2x2_nhwc(&x, &wt, &b)?;
                assert_eq!(ours.dims(), &[n, 2 * h, 2 * w, cout]);
                assert_eq!(ours.sorted_nodes().len(), if trainable { 4 } else { 3 });
                let reference = x
                    .permute((0, 3, 1, 2))?
                    .conv_transpose2d(&wt, 0, 0, 2, 1)?
                    .broadcast_add(&b.reshape((1, cout, 1, 1))?)?
                    .permute((0, 2, 3, 1))?;
                assert!(rel_err(&ours, &reference.contiguous()?) < 1e-5);
                let go = (&ours * &g)?.sum_all()?.backward()?;
                let gr = (&reference * &g)?.sum_all()?.backward()?;
                let mut checked = vec![x.as_tensor(), b.as_tensor()];
                if trainable {
                    checked.push(&wt);
                } else {
                    assert!(go.get(&wt).is_none(), "a frozen weight got a gradient");
                }
                for t in checked {
                    let (a, r) = (go.get(t).expect("ours"), gr.get(t).expect("reference"));
                    assert_eq!(a.dims(), t.dims());
                    let e = rel_err(a, r);
                    assert!(
                        e < 1e-5,
                        "{:?}: gradient of {:?} off by {e}",
                        (n, h, w, cin, cout),
                        t.dims()
                    );
                }
            }
        }
        Ok(())
    }

    /// Empty maps and channel counts give empty (or bias-only) results and gradients of the
    /// right shapes, not a panic (candle's own transposed convolution refuses them).
    #[test]
    fn empty_shapes_are_handled() -> Result<()> {
        let dev = Device::Cpu;
        for (n, h, w, cin, cout) in [
            (2usize, 3usize, 0usize, 4usize, 3usize),
            (1, 2, 2, 4, 0),
            (1, 2, 2, 0, 3),
        ] {
            let x = Var::from_tensor(&Tensor::zeros(
                (n, h, w, cin),
                candle_core::DType::F32,
                &dev,
            )?)?;
            let wt = Var::from_tensor(&Tensor::ones(
                (cin, cout, 2, 2),
                candle_core::DType::F32,
                &dev,
            )?)?;
            let b = Var::from_tensor(&Tensor::arange(0f32, cout as f32, &dev)?)?;
            let y = conv_transpose_2x2_nhwc(&x, &wt, &b)?;
            assert_eq!(y.dims(), &[n, 2 * h, 2 * w, cout]);
            // no input channels: every output pixel is the bias
            let want = b.reshape((1, 1, 1, cout))?.broadcast_as(y.shape())?;
            assert_eq!(rel_err(&y, &want.contiguous()?), 0.0);
            let grads = y.sum_all()?.backward()?;
            for t in [x.as_tensor(), wt.as_tensor(), b.as_tensor()] {
                assert_eq!(grads.get(t).expect("gradient").dims(), t.dims());
            }
            let pixels = (n * 4 * h * w) as f32;
            let db = grads.get(b.as_tensor()).expect("db").to_vec1::<f32>()?;
            assert!(db.iter().all(|&v| v == pixels), "{db:?}");
        }
        Ok(())
    }
}
