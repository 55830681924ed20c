//! The Conv3D custom ops: candle `CustomOp2`/`CustomOp3` glue and the explicit backward.
//!
//! Forward: [`Conv3dOp`] (input, weight[, bias]). Backward (`bwd`):
//! - grad input = the convolution of `grad_y` with the weight channel-swapped and flipped
//!   (`(C, O, kd, kh, kw)`) on the [transposed geometry](Conv3dGeometry::transposed): on CPU
//!   [`Conv3dInputGradOp`] (grad_y, weight), which reads the flipped weight in place for
//!   depth-only kernels; on CUDA the forward op on a flipped copy;
//! - grad weight = [`Conv3dWeightGradOp`] (input, grad_y);
//! - grad bias = `grad_y` summed over batch and space (one pass on CPU, tensor ops on CUDA).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::cpu;
use crate::error::{Conv3dError, Result};
use crate::geometry::{Conv3dGeometry, Conv3dKernel, Conv3dPadding};

/// The forward custom op. Apply it through [`conv3d_op`]; its operands must be contiguous.
#[derive(Debug, Clone, Copy)]
pub struct Conv3dOp {
    /// The resolved geometry.
    pub geom: Conv3dGeometry,
    /// The CPU kernel choice.
    pub kernel: Conv3dKernel,
}

/// Gradient of the weight as a custom op on (input, grad_y), applied without a backward.
#[derive(Debug, Clone, Copy)]
pub struct Conv3dWeightGradOp {
    /// The geometry of the forward convolution.
    pub geom: Conv3dGeometry,
    /// The CPU kernel choice.
    pub kernel: Conv3dKernel,
}

fn cpu_f32<'a>(
    what: &str,
    s: &'a CpuStorage,
    l: &Layout,
    dims: &[usize],
) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => candle_core::bail!(
            "conv3d: {what} has dtype {:?}; the CPU kernels take f32",
            other.dtype()
        ),
    };
    if l.dims() != dims {
        candle_core::bail!("conv3d: {what} has shape {:?}, expected {dims:?}", l.dims());
    }
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("conv3d: {what} must be contiguous"),
    }
}

impl Conv3dOp {
    fn cpu(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let xs = cpu_f32("input", x.0, x.1, &g.x_shape())?;
        let ws = cpu_f32("weight", w.0, w.1, g.w_shape().dims())?;
        let bs = match b {
            Some((s, l)) => Some(cpu_f32("bias", s, l, &[g.out_channels])?),
            None => None,
        };
        let y = cpu::conv3d_forward(g, xs, ws, bs, self.kernel);
        Ok((CpuStorage::F32(y), g.y_shape()))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let g = grad.contiguous()?;
        let gx = if g.device().is_cpu() {
            let op = Conv3dInputGradOp {
                geom: self.geom,
                kernel: self.kernel,
            };
            g.apply_op2_no_bwd(&w.contiguous()?, &op)?
        } else {
            let wt = flip_kernel(&w.transpose(0, 1)?.contiguous()?)?;
            let back = Conv3dOp {
                geom: self.geom.transposed(),
                kernel: self.kernel,
            };
            g.apply_op2_no_bwd(&wt, &back)?
        };
        let gw_op = Conv3dWeightGradOp {
            geom: self.geom,
            kernel: self.kernel,
        };
        let gw = x.contiguous()?.apply_op2_no_bwd(&g, &gw_op)?;
        Ok((gx, gw))
    }
}

/// Grad bias in one pass over `grad_y` (CPU).
struct BiasGradOp(Conv3dGeometry);

impl CustomOp1 for BiasGradOp {
    fn name(&self) -> &'static str {
        "masam-conv3d-grad-bias"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let gs = cpu_f32("grad_y", s, l, self.0.y_shape().dims())?;
        let gb = cpu::conv3d_bias_grad(&self.0, gs);
        Ok((CpuStorage::F32(gb), Shape::from(self.0.out_channels)))
    }
}

fn bias_grad(geom: &Conv3dGeometry, grad: &Tensor) -> candle_core::Result<Tensor> {
    if grad.device().is_cpu() && grad.dtype() == DType::F32 {
        return grad.contiguous()?.apply_op1_no_bwd(&BiasGradOp(*geom));
    }
    let p: usize = geom.output.iter().product();
    let dtype = grad.dtype();
    grad.to_dtype(DType::F32)?
        .reshape((geom.batch, geom.out_channels, p))?
        .sum(2)?
        .sum(0)?
        .to_dtype(dtype)
}

impl CustomOp2 for Conv3dOp {
    fn name(&self) -> &'static str {
        "masam-conv3d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let y = crate::cuda::forward(&self.geom, (s1, l1), (s2, l2), None)?;
        Ok((y, self.geom.y_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.grads(x, w, grad)?;
        Ok((Some(gx), Some(gw)))
    }
}

impl CustomOp3 for Conv3dOp {
    fn name(&self) -> &'static str {
        "masam-conv3d-bias"
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
        self.cpu((s1, l1), (s2, l2), Some((s3, l3)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let y = crate::cuda::forward(&self.geom, (s1, l1), (s2, l2), Some((s3, l3)))?;
        Ok((y, self.geom.y_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.grads(x, w, grad)?;
        let gb = bias_grad(&self.geom, grad)?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}

impl CustomOp2 for Conv3dWeightGradOp {
    fn name(&self) -> &'static str {
        "masam-conv3d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let xs = cpu_f32("input", s1, l1, &g.x_shape())?;
        let gs = cpu_f32("grad_y", s2, l2, g.y_shape().dims())?;
        let gw = cpu::conv3d_weight_grad(g, xs, gs, self.kernel);
        Ok((CpuStorage::F32(gw), g.w_shape()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let gw = crate::cuda::weight_grad(&self.geom, (s1, l1), (s2, l2))?;
        Ok((gw, self.geom.w_shape()))
    }
}

/// Gradient of the input as a custom op on (grad_y, weight), applied without a backward; CPU
/// only (the CUDA backward runs [`Conv3dOp`] on the transposed geometry and a flipped weight).
///
/// Computes the convolution of `grad_y` (N, O, OD, OH, OW) with the channel-swapped, flipped
/// weight on the [transposed geometry](Conv3dGeometry::transposed); returns (N, C, D, H, W).
#[derive(Debug, Clone, Copy)]
pub struct Conv3dInputGradOp {
    /// The geometry of the forward convolution.
    pub geom: Conv3dGeometry,
    /// The CPU kernel choice (resolved on the transposed geometry).
    pub kernel: Conv3dKernel,
}

impl CustomOp2 for Conv3dInputGradOp {
    fn name(&self) -> &'static str {
        "masam-conv3d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let gs = cpu_f32("grad_y", s1, l1, g.y_shape().dims())?;
        let ws = cpu_f32("weight", s2, l2, g.w_shape().dims())?;
        let gx = cpu::conv3d_input_grad(g, gs, ws, self.kernel);
        Ok((CpuStorage::F32(gx), Shape::from(g.x_shape().to_vec())))
    }
}

/// Conv3D with stride 1: `y = conv3d(x, weight) + bias`, differentiable in all three operands.
///
/// # Shapes
/// - `x`: (N, C, D, H, W); `weight`: (O, C, kd, kh, kw); `bias`: (O,)
/// - returns (N, O, OD, OH, OW); with [`Conv3dPadding::Same`], (OD, OH, OW) = (D, H, W)
///
/// Dtypes: f32 on CPU; f32, f16 and bf16 on CUDA (accumulated in f32).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use masam_conv3d::{conv3d_op, Conv3dPadding};
/// # fn main() -> masam_conv3d::Result<()> {
/// let x = Tensor::ones((1, 2, 5, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
/// let w = Tensor::ones((3, 2, 3, 1, 1), candle_core::DType::F32, &Device::Cpu)?;
/// let y = conv3d_op(&x, &w, None, Conv3dPadding::Same)?;
/// assert_eq!(y.dims(), &[1, 3, 5, 4, 4]);
/// // the first slice only sees two of the three taps (zero padding); this shape runs on the
/// // Winograd path, exact up to f32 rounding
/// let first = y.get(0)?.get(0)?.get(0)?.get(0)?.get(0)?.to_scalar::<f32>()?;
/// assert!((first - 4.0).abs() < 1e-5);
/// # Ok(()) }
/// ```
pub fn conv3d_op(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: Conv3dPadding,
) -> Result<Tensor> {
    conv3d_op_with(x, weight, bias, padding, Conv3dKernel::Auto)
}

/// [`conv3d_op`] with an explicit CPU kernel choice.
pub fn conv3d_op_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: Conv3dPadding,
    kernel: Conv3dKernel,
) -> Result<Tensor> {
    let geom = Conv3dGeometry::new(x.dims(), weight.dims(), padding)?;
    check_operands(x, weight, bias, geom.out_channels)?;
    let op = Conv3dOp { geom, kernel };
    let x = x.contiguous()?;
    let w = weight.contiguous()?;
    let y = match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op)?,
        None => x.apply_op2(&w, op)?,
    };
    Ok(y)
}

fn check_operands(x: &Tensor, w: &Tensor, b: Option<&Tensor>, out_channels: usize) -> Result<()> {
    let dev = x.device();
    let dtype = x.dtype();
    let mut others = vec![("weight", w)];
    if let Some(b) = b {
        if b.dims() != [out_channels] {
            return Err(Conv3dError::BiasShape {
                out_channels,
                got: b.dims().to_vec(),
            });
        }
        others.push(("bias", b));
    }
    for (name, t) in others {
        if t.dtype() != dtype {
            return Err(Conv3dError::Mismatch(format!(
                "input is {dtype:?}, {name} is {:?}",
                t.dtype()
            )));
        }
        if !t.device().same_device(dev) {
            return Err(Conv3dError::Mismatch(format!(
                "input is on {:?}, {name} on {:?}",
                dev.location(),
                t.device().location()
            )));
        }
    }
    let ok = match dev {
        candle_core::Device::Cpu => dtype == DType::F32,
        candle_core::Device::Cuda(_) => matches!(dtype, DType::F32 | DType::F16 | DType::BF16),
        _ => false,
    };
    if !ok {
        let device = match dev {
            candle_core::Device::Cpu => "cpu",
            candle_core::Device::Cuda(_) => "cuda",
            _ => "this device",
        };
        return Err(Conv3dError::UnsupportedDType { dtype, device });
    }
    Ok(())
}

/// Reverses the kernel dims (2, 3, 4) of a contiguous 5-D weight, skipping size-1 dims.
fn flip_kernel(w: &Tensor) -> candle_core::Result<Tensor> {
    let mut w = w.clone();
    for d in 2..5 {
        if w.dim(d)? > 1 {
            w = w.flip(&[d])?.contiguous()?;
        }
    }
    Ok(w)
}
