//! Depth-only Conv3D on channels-last activations (CPU, `f32`), with its backward pass.
//!
//! MA-SAM's adapter convolves along the slices with a `(kd, 1, 1)` kernel, between two linear
//! layers that work on channels-last tokens `(N, D, H, W, C)`. [`conv3d_op`](crate::conv3d_op)
//! takes channels-first `(N, C, D, H, W)`, so the adapter used to permute its activations into
//! that layout and back again: two full copies forward and two more backward. Here the
//! convolution runs on the channels-last layout itself: output slice `od` of volume `n` is
//! `bias + Σ_t x[n, od − pad + t] · W_tᵀ`, a sum of GEMMs over whole slices
//! (`H·W × C` times `C × O`), and each tap is one GEMM over every output slice it reaches. The
//! gradients are GEMMs of the same shape: `dx[n, id] = Σ_t dy[n, id + pad − t] · W_t` and
//! `dW_t = Σ_n dy[n, ·]ᵀ · x[n, · shifted]`, the bias gradient a column sum.
//!
//! Other devices and dtypes permute around [`conv3d_op`](crate::conv3d_op).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::error::{Conv3dError, Result};
use crate::geometry::{Conv3dGeometry, Conv3dPadding};
use masam_nn::gemm::{gemm_into, Mat, MatMut};

/// Sizes of a channels-last depth-only convolution.
#[derive(Debug, Clone, Copy)]
struct DepthGeom {
    /// Volumes, input slices, positions per slice (H·W), input and output channels, taps,
    /// front padding, output slices.
    n: usize,
    d: usize,
    h: usize,
    w: usize,
    s: usize,
    c: usize,
    o: usize,
    kd: usize,
    pad: usize,
    od: usize,
}

impl DepthGeom {
    /// Output slices `od` that tap `t` reaches from a valid input slice, as a range, and the
    /// input slice of the first.
    fn tap_range(&self, t: usize) -> Option<(usize, usize, usize)> {
        // id = od − pad + t ∈ [0, d)
        let lo = self.pad.saturating_sub(t);
        let hi = (self.d + self.pad).saturating_sub(t).min(self.od);
        (hi > lo).then(|| (lo, hi, lo + t - self.pad))
    }
}

/// Depth-only Conv3D of channels-last `x` (N, D, H, W, C) with `weight` (O, C, kd, 1, 1): returns
/// (N, OD, H, W, O), the same values as permuting `x` to (N, C, D, H, W), running
/// [`conv3d_op`](crate::conv3d_op) and permuting back, up to float rounding; differentiable in
/// `x`, `weight` and `bias`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use masam_conv3d::{conv3d_depth_channels_last, conv3d_op, Conv3dPadding};
/// # fn main() -> masam_conv3d::Result<()> {
/// let dev = Device::Cpu;
/// let x = Tensor::randn(0f32, 1., (2, 5, 3, 4, 6), &dev)?; // (N, D, H, W, C)
/// let w = Tensor::randn(0f32, 1., (7, 6, 3, 1, 1), &dev)?;
/// let b = Tensor::randn(0f32, 1., 7, &dev)?;
/// let y = conv3d_depth_channels_last(&x, &w, Some(&b), Conv3dPadding::Same)?;
/// let first = conv3d_op(&x.permute((0, 4, 1, 2, 3))?, &w, Some(&b), Conv3dPadding::Same)?;
/// let diff = (y - first.permute((0, 2, 3, 4, 1))?)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(diff < 1e-4);
/// # Ok(()) }
/// ```
///
/// # Errors
/// A weight that is not depth-only, shapes that do not fit, mixed devices or dtypes.
pub fn conv3d_depth_channels_last(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: Conv3dPadding,
) -> Result<Tensor> {
    let [n, d, h, w, c] = <[usize; 5]>::try_from(x.dims()).map_err(|_| Conv3dError::Rank {
        what: "channels-last conv3d input (N, D, H, W, C)",
        expected: 5,
        got: x.dims().to_vec(),
    })?;
    // the geometry's checks (channels, zero sizes, empty output) on the channels-first view
    let geom = Conv3dGeometry::new(&[n, c, d, h, w], weight.dims(), padding)?;
    let [_, _, kd, kh, kw] = <[usize; 5]>::try_from(weight.dims()).unwrap_or([0; 5]);
    if kh != 1 || kw != 1 {
        return Err(Conv3dError::Mismatch(format!(
            "channels-last conv3d needs a depth-only (kd, 1, 1) kernel, got {:?}",
            weight.dims()
        )));
    }
    let plain_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    let fused = plain_cpu(x) && plain_cpu(weight) && bias.is_none_or(plain_cpu);
    if !fused {
        // other devices and dtypes: the channels-first op between two permutes
        let y = crate::conv3d_op(&x.permute((0, 4, 1, 2, 3))?, weight, bias, padding)?;
        return Ok(y.permute((0, 2, 3, 4, 1))?.contiguous()?);
    }
    if let Some(b) = bias {
        if b.dims() != [geom.out_channels] {
            return Err(Conv3dError::BiasShape {
                out_channels: geom.out_channels,
                got: b.dims().to_vec(),
            });
        }
    }
    let g = DepthGeom {
        n,
        d,
        h,
        w,
        s: h * w,
        c,
        o: geom.out_channels,
        kd,
        pad: geom.pad_front[0] as usize,
        od: geom.output[0],
    };
    let x = x.contiguous()?;
    let weight = weight.contiguous()?;
    let op = DepthConvCl(g);
    let y = match bias {
        Some(b) => x.apply_op3(&weight, &b.contiguous()?, op)?,
        None => x.apply_op2(&weight, op)?,
    };
    Ok(y)
}

/// The contiguous `f32` elements of a CPU storage.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    masam_nn::ops::contiguous_f32(s, l, what)
}

/// The forward op (inputs x, weight[, bias]).
struct DepthConvCl(DepthGeom);

impl DepthConvCl {
    fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let g = self.0;
        let (rows_in, rows_out) = (g.d * g.s, g.od * g.s);
        let len = g.n * rows_out * g.o;
        let mut y = match b {
            Some(b) => masam_nn::ops::fill_rows_f32(len, b),
            _ => vec![0f32; len],
        };
        for n in 0..g.n {
            for t in 0..g.kd {
                let Some((lo, hi, id0)) = g.tap_range(t) else {
                    continue;
                };
                gemm_into(
                    (hi - lo) * g.s,
                    g.o,
                    g.c,
                    MatMut::rows(&mut y, (n * rows_out + lo * g.s) * g.o, g.o),
                    Mat {
                        data: x,
                        off: (n * rows_in + id0 * g.s) * g.c,
                        rs: g.c,
                        cs: 1,
                    },
                    // W_tᵀ: element (c, o) is w[(o·C + c)·kd + t]
                    Mat {
                        data: w,
                        off: t,
                        rs: g.kd,
                        cs: g.c * g.kd,
                    },
                    true,
                );
            }
        }
        y
    }

    fn shape(&self) -> Shape {
        let g = self.0;
        Shape::from((g.n, g.od, g.h, g.w, g.o))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(&w.contiguous()?, &InputGrad(self.0))?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(
                x.contiguous()?
                    .apply_op2_no_bwd(&grad, &WeightGrad(self.0))?,
            )
        } else {
            None
        };
        Ok((gx, gw))
    }
}

impl CustomOp2 for DepthConvCl {
    fn name(&self) -> &'static str {
        "masam-conv3d-depth-channels-last"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = self.forward(f32s(xs, xl, "input")?, f32s(ws, wl, "weight")?, None);
        Ok((CpuStorage::F32(y), self.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, grad)
    }
}

impl CustomOp3 for DepthConvCl {
    fn name(&self) -> &'static str {
        "masam-conv3d-depth-channels-last-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = self.forward(
            f32s(xs, xl, "input")?,
            f32s(ws, wl, "weight")?,
            Some(f32s(bs, bl, "bias")?),
        );
        Ok((CpuStorage::F32(y), self.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.grads(x, w, grad)?;
        let gb = if b.track_op() {
            Some(grad.contiguous()?.apply_op1_no_bwd(&BiasGrad(self.0))?)
        } else {
            None
        };
        Ok((gx, gw, gb))
    }
}

/// `dx[n, id] = Σ_t dy[n, id + pad − t] · W_t` (inputs dy, weight).
struct InputGrad(DepthGeom);

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "masam-conv3d-depth-channels-last-grad-input"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (dy, w) = (f32s(gs, gl, "grad")?, f32s(ws, wl, "weight")?);
        let (rows_in, rows_out) = (g.d * g.s, g.od * g.s);
        let mut dx = vec![0f32; g.n * rows_in * g.c];
        for n in 0..g.n {
            for t in 0..g.kd {
                let Some((lo, hi, id0)) = g.tap_range(t) else {
                    continue;
                };
                gemm_into(
                    (hi - lo) * g.s,
                    g.c,
                    g.o,
                    MatMut::rows(&mut dx, (n * rows_in + id0 * g.s) * g.c, g.c),
                    Mat {
                        data: dy,
                        off: (n * rows_out + lo * g.s) * g.o,
                        rs: g.o,
                        cs: 1,
                    },
                    // W_t: element (o, c) is w[(o·C + c)·kd + t]
                    Mat {
                        data: w,
                        off: t,
                        rs: g.c * g.kd,
                        cs: g.kd,
                    },
                    true,
                );
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.d, g.h, g.w, g.c))))
    }
}

/// `dW[o, c, t] = Σ_n Σ_od dy[n, od, ·, o] · x[n, od − pad + t, ·, c]` (inputs x, dy).
struct WeightGrad(DepthGeom);

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "masam-conv3d-depth-channels-last-grad-weight"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (x, dy) = (f32s(xs, xl, "input")?, f32s(gs, gl, "grad")?);
        let (rows_in, rows_out) = (g.d * g.s, g.od * g.s);
        let mut dw = vec![0f32; g.o * g.c * g.kd];
        for n in 0..g.n {
            for t in 0..g.kd {
                let Some((lo, hi, id0)) = g.tap_range(t) else {
                    continue;
                };
                gemm_into(
                    g.o,
                    g.c,
                    (hi - lo) * g.s,
                    // dW_t: element (o, c) at (o·C + c)·kd + t
                    MatMut {
                        data: &mut dw,
                        off: t,
                        rs: g.c * g.kd,
                        cs: g.kd,
                    },
                    // dyᵀ: element (o, row) at row·O + o
                    Mat {
                        data: dy,
                        off: (n * rows_out + lo * g.s) * g.o,
                        rs: 1,
                        cs: g.o,
                    },
                    Mat {
                        data: x,
                        off: (n * rows_in + id0 * g.s) * g.c,
                        rs: g.c,
                        cs: 1,
                    },
                    true,
                );
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from((g.o, g.c, g.kd, 1, 1))))
    }
}

/// `db[o] = Σ dy[·, o]` in fixed-size blocks (the same sum on any number of threads).
struct BiasGrad(DepthGeom);

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "masam-conv3d-depth-channels-last-grad-bias"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let o = self.0.o;
        let dy = f32s(s, l, "grad")?;
        Ok((
            CpuStorage::F32(masam_nn::ops::column_sums(dy, o)),
            Shape::from(o),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward and the input, weight and bias gradients against the channels-first op between
    /// permutes: odd and even kernels, explicit and 'same' padding, fewer slices than taps,
    /// one and several volumes, with and without bias.
    #[test]
    fn matches_the_channels_first_op_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let cases = [
            (2usize, 5usize, 3usize, Conv3dPadding::Same, true),
            (1, 5, 3, Conv3dPadding::Explicit([1, 0, 0]), false),
            (1, 4, 2, Conv3dPadding::Same, true),
            (2, 2, 3, Conv3dPadding::Same, true),
            (1, 6, 3, Conv3dPadding::Explicit([0, 0, 0]), true),
            (1, 3, 1, Conv3dPadding::Same, false),
            (1, 2, 5, Conv3dPadding::Explicit([2, 0, 0]), true),
        ];
        for (n, d, kd, padding, with_bias) in cases {
            let (h, w, c, o) = (3usize, 4usize, 6usize, 5usize);
            let x = Var::randn(0f32, 1., (n, d, h, w, c), &dev)?;
            let wt = Var::randn(0f32, 0.5, (o, c, kd, 1, 1), &dev)?;
            let b = Var::randn(0f32, 0.5, o, &dev)?;
            let bias = with_bias.then(|| b.as_tensor());
            let ours = conv3d_depth_channels_last(x.as_tensor(), wt.as_tensor(), bias, padding)?;
            let theirs = crate::conv3d_op_with(
                &x.as_tensor().permute((0, 4, 1, 2, 3))?,
                wt.as_tensor(),
                bias,
                padding,
                crate::Conv3dKernel::DepthGemm,
            )?
            .permute((0, 2, 3, 4, 1))?;
            assert_eq!(ours.dims(), theirs.dims());
            let e = masam_testkit::rel_err(&ours, &theirs);
            assert!(e < 1e-5, "{n} {d} {kd} {padding:?}: forward differs by {e}");
            let g = Tensor::randn(0f32, 1., ours.dims(), &dev)?;
            let ga = (&ours * &g)?.sum_all()?.backward()?;
            let gb = (&theirs * &g)?.sum_all()?.backward()?;
            let mut named = vec![("x", x.as_tensor()), ("weight", wt.as_tensor())];
            if with_bias {
                named.push(("bias", b.as_tensor()));
            }
            for (name, t) in named {
                let (Some(a), Some(r)) = (ga.get(t), gb.get(t)) else {
                    panic!("{n} {d} {kd} {padding:?}: no gradient for {name}");
                };
                let e = masam_testkit::rel_err(a, r);
                assert!(
                    e < 1e-5,
                    "{n} {d} {kd} {padding:?}: {name} gradient differs by {e}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient_and_bad_shapes_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1., (1, 5, 2, 2, 4), &dev)?;
        let w = Tensor::randn(0f32, 1., (3, 4, 3, 1, 1), &dev)?;
        let y = conv3d_depth_channels_last(x.as_tensor(), &w, None, Conv3dPadding::Same)?;
        let grads = y.sum_all()?.backward()?;
        assert!(grads.get(x.as_tensor()).is_some() && grads.get(&w).is_none());
        let spatial = Tensor::zeros((3, 4, 3, 3, 1), DType::F32, &dev)?;
        assert!(
            conv3d_depth_channels_last(x.as_tensor(), &spatial, None, Conv3dPadding::Same).is_err()
        );
        let wrong_c = Tensor::zeros((3, 5, 3, 1, 1), DType::F32, &dev)?;
        assert!(
            conv3d_depth_channels_last(x.as_tensor(), &wrong_c, None, Conv3dPadding::Same).is_err()
        );
        let bias = Tensor::zeros(4, DType::F32, &dev)?;
        assert!(
            conv3d_depth_channels_last(x.as_tensor(), &w, Some(&bias), Conv3dPadding::Same)
                .is_err()
        );
        let rank4 = Tensor::zeros((5, 2, 2, 4), DType::F32, &dev)?;
        assert!(conv3d_depth_channels_last(&rank4, &w, None, Conv3dPadding::Same).is_err());
        Ok(())
    }
}
