//! The CPU kernel of the mask decoder's last product for `f32`: the mask logits
//! `m[b, t, y, x] = Σ_c k[b, t, c] · u[b, y, x, c]` of the hypernetwork outputs `k` (B, T, C)
//! and the upscaled channels-last map `u` (B, H, W, C), with its backward pass.
//!
//! Per image it is one GEMM reading `u` transposed in place; the gradients are one GEMM each,
//! `dk_b = dm_b · u_b` and `du_b = dm_bᵀ · k_b`. The composition it replaces (reshape,
//! transpose, matmul, reshape) recorded four graph nodes of the map's size and made the
//! backward pass accumulate a strided gradient.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use masam_nn::gemm::{gemm_with, Mat, MatMut};
use masam_nn::ops::with_f32;

const OP: &str = "mask_logits";

/// Sizes: images, mask tokens, pixels per image, channels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaskLogits {
    pub(crate) b: usize,
    pub(crate) t: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
}

impl MaskLogits {
    fn pixels(&self) -> usize {
        self.h * self.w
    }

    /// `m` (B, T, H·W).
    fn forward(&self, k: &[f32], u: &[f32]) -> Vec<f32> {
        let (t, p, c) = (self.t, self.pixels(), self.c);
        let mut m = vec![0f32; self.b * t * p];
        for b in 0..self.b {
            gemm_with(
                t,
                p,
                c,
                MatMut::rows(&mut m, b * t * p, p),
                Mat {
                    data: k,
                    off: b * t * c,
                    rs: c,
                    cs: 1,
                },
                // u_bᵀ (C × H·W), read in place
                Mat {
                    data: u,
                    off: b * p * c,
                    rs: 1,
                    cs: c,
                },
                false,
                1.0,
                true,
            );
        }
        m
    }

    /// `dL/dk` (B, T, C).
    fn tokens_grad(&self, dm: &[f32], u: &[f32]) -> Vec<f32> {
        let (t, p, c) = (self.t, self.pixels(), self.c);
        let mut dk = vec![0f32; self.b * t * c];
        for b in 0..self.b {
            gemm_with(
                t,
                c,
                p,
                MatMut::rows(&mut dk, b * t * c, c),
                Mat {
                    data: dm,
                    off: b * t * p,
                    rs: p,
                    cs: 1,
                },
                Mat {
                    data: u,
                    off: b * p * c,
                    rs: c,
                    cs: 1,
                },
                false,
                1.0,
                true,
            );
        }
        dk
    }

    /// `dL/du` (B, H, W, C).
    fn map_grad(&self, dm: &[f32], k: &[f32]) -> Vec<f32> {
        let (t, p, c) = (self.t, self.pixels(), self.c);
        let mut du = vec![0f32; self.b * p * c];
        for b in 0..self.b {
            gemm_with(
                p,
                c,
                t,
                MatMut::rows(&mut du, b * p * c, c),
                // dm_bᵀ (H·W × T), read in place
                Mat {
                    data: dm,
                    off: b * t * p,
                    rs: 1,
                    cs: p,
                },
                Mat {
                    data: k,
                    off: b * t * c,
                    rs: c,
                    cs: 1,
                },
                false,
                1.0,
                true,
            );
        }
        du
    }
}

/// The op: inputs `(k, u)`.
pub(crate) struct MaskLogitsOp(pub(crate) MaskLogits);

impl CustomOp2 for MaskLogitsOp {
    fn name(&self) -> &'static str {
        "masam-mask-logits"
    }

    fn cpu_fwd(
        &self,
        ks: &CpuStorage,
        kl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let k = masam_nn::ops::contiguous_f32(ks, kl, OP)?;
        let u = masam_nn::ops::contiguous_f32(us, ul, OP)?;
        Ok((
            CpuStorage::F32(g.forward(k, u)),
            Shape::from((g.b, g.t, g.h, g.w)),
        ))
    }

    fn bwd(
        &self,
        k: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        let dk = if k.track_op() {
            let v = with_f32(grad, OP, |dm| with_f32(u, OP, |u| g.tokens_grad(dm, u)))??;
            Some(Tensor::from_vec(v, k.shape(), k.device())?)
        } else {
            None
        };
        let du = if u.track_op() {
            let v = with_f32(grad, OP, |dm| with_f32(k, OP, |k| g.map_grad(dm, k)))??;
            Some(Tensor::from_vec(v, u.shape(), u.device())?)
        } else {
            None
        };
        Ok((dk, du))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Result, Tensor, Var};
    use masam_testkit::rel_err;

    use super::{MaskLogits, MaskLogitsOp};

    /// Values and both gradients against candle's reshape/transpose/matmul composition; the
    /// op is one node between its inputs and its output.
    #[test]
    fn matches_the_matmul_composition_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (b, t, h, w, c) in [
            (1usize, 1usize, 1usize, 1usize, 1usize),
            (2, 5, 7, 9, 8),
            (3, 4, 32, 16, 32),
        ] {
            let k = Var::from_tensor(&Tensor::randn(0f32, 1., (b, t, c), &dev)?)?;
            let u = Var::from_tensor(&Tensor::randn(0f32, 1., (b, h, w, c), &dev)?)?;
            let g = Tensor::randn(0f32, 1., (b, t, h, w), &dev)?;
            let ours = k.apply_op2(&u, MaskLogitsOp(MaskLogits { b, t, h, w, c }))?;
            assert_eq!(ours.sorted_nodes().len(), 3);
            let reference = k
                .matmul(&u.reshape((b, h * w, c))?.transpose(1, 2)?)?
                .reshape((b, t, h, w))?;
            assert!(rel_err(&ours, &reference) < 1e-5);
            let go = (&ours * &g)?.sum_all()?.backward()?;
            let gr = (&reference * &g)?.sum_all()?.backward()?;
            for v in [k.as_tensor(), u.as_tensor()] {
                let (a, r) = (go.get(v).expect("ours"), gr.get(v).expect("reference"));
                assert_eq!(a.dims(), v.dims());
                assert!(rel_err(a, r) < 1e-5, "gradient of {:?}", v.dims());
            }
        }
        Ok(())
    }
}
