//! Stride-1 "same" 2D convolution on channels-last maps, computed as one matrix product.
//!
//! candle's `conv2d` records a backward whose input gradient is its generic transposed
//! convolution, which is slow on the CPU for the small maps of SAM's neck and decoder. A 1 × 1
//! kernel is a linear layer. Larger kernels on CPU `f32` tensors run one GEMM per tap on the
//! padded map (the crate's `conv_shift` kernel); elsewhere they are written as `cat(shifted windows) · Wᵀ`
//! (one GEMM forward, two backward, plus the copies of `narrow`/`cat`).

use candle_core::{Result, Tensor};

/// Convolution of an NHWC map with an odd square kernel, stride 1, zero padding `k/2` (the
/// output has the input's size), optional bias.
///
/// # Shapes
/// - `x`: (N, H, W, C); `weight`: (O, C, k, k) (PyTorch layout), k odd; `bias`: (O,)
/// - returns (N, H, W, O)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::randn(0f32, 1., (1, 5, 6, 2), &Device::Cpu).unwrap();
/// let w = Tensor::randn(0f32, 1., (3, 2, 3, 3), &Device::Cpu).unwrap();
/// let y = masam_sam::conv_gemm::conv2d_same_nhwc(&x, &w, None).unwrap();
/// assert_eq!(y.dims(), &[1, 5, 6, 3]);
/// ```
pub fn conv2d_same_nhwc(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    if wc != c || kh != kw || kh % 2 == 0 {
        candle_core::bail!(
            "conv2d_same_nhwc: input {:?} does not fit weight {:?} (odd square kernel expected)",
            x.dims(),
            weight.dims()
        );
    }
    if let Some(b) = bias.filter(|b| b.dims() != [o]) {
        candle_core::bail!(
            "conv2d_same_nhwc: bias {:?} does not fit {o} output channels",
            b.dims()
        );
    }
    let k = kh;
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if k > 1 && cpu_f32(x) && cpu_f32(weight) && bias.is_none_or(cpu_f32) {
        // one GEMM per tap on the padded map, with its own backward (crate::conv_shift)
        let op = crate::conv_shift::ConvSameOp(crate::conv_shift::ConvSame { n, h, w, c, o, k });
        let (x, weight) = (x.contiguous()?, weight.contiguous()?);
        return match bias {
            Some(b) => x.apply_op3(&weight, &b.contiguous()?, op),
            None => x.apply_op2(&weight, op),
        };
    }
    let rows = if k == 1 {
        x.reshape((n * h * w, c))?
    } else {
        let p = k / 2;
        let padded = x.pad_with_zeros(1, p, p)?.pad_with_zeros(2, p, p)?;
        let mut taps = Vec::with_capacity(k * k);
        for ky in 0..k {
            for kx in 0..k {
                taps.push(padded.narrow(1, ky, h)?.narrow(2, kx, w)?);
            }
        }
        // Columns in (ky, kx, channel) order, matching the permuted weight below.
        Tensor::cat(&taps, 3)?.reshape((n * h * w, k * k * c))?
    };
    // (O, ky, kx, C) rows: the layout of a linear layer's weight over these columns
    let wk = weight
        .to_dtype(x.dtype())?
        .permute((0, 2, 3, 1))?
        .reshape((o, k * k * c))?;
    let b = bias.map(|b| b.to_dtype(x.dtype())).transpose()?;
    let mut operands = vec![&rows, &wk];
    operands.extend(b.as_ref());
    let y = if masam_nn::ops::fusable(&operands) {
        // one GEMM into the bias
        masam_nn::ops::linear_fused(&rows, &wk, b.as_ref())?
    } else {
        let y = rows.matmul(&wk.t()?)?;
        match &b {
            Some(b) => masam_nn::add_bias(&y, b)?,
            None => y,
        }
    };
    y.reshape((n, h, w, o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn equals_candle_conv2d_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for k in [1usize, 3, 5] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 7, 5, 3), &dev)?)?;
            let wt = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 3, k, k), &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f32, 1., 4, &dev)?)?;
            let ours = conv2d_same_nhwc(&x, &wt, Some(&b))?;
            let theirs = x
                .permute((0, 3, 1, 2))?
                .conv2d(&wt, k / 2, 1, 1, 1)?
                .broadcast_add(&b.reshape((1, 4, 1, 1))?)?
                .permute((0, 2, 3, 1))?;
            let d = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "k {k}: forward differs by {d}");
            let g = Tensor::randn(0f32, 1., ours.dims(), &dev)?;
            let ga = (&ours * &g)?.sum_all()?.backward()?;
            let gb = (&theirs * &g)?.sum_all()?.backward()?;
            for v in [&x, &wt, &b] {
                let (a, e) = (ga.get(v).unwrap(), gb.get(v).unwrap());
                let d = (a - e)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-3, "k {k}: gradient differs by {d}");
            }
        }
        Ok(())
    }

    /// The shifted-GEMM kernel without bias, with a frozen weight (no gradient for it) and a
    /// 1-pixel-wide map, against candle's conv2d.
    #[test]
    fn the_kernel_without_bias_and_with_a_frozen_weight() -> Result<()> {
        let dev = Device::Cpu;
        for (h, w, k) in [(4usize, 1usize, 3usize), (3, 6, 5), (9, 9, 3)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (3, h, w, 4), &dev)?)?;
            let wt = Tensor::randn(0f32, 1., (5, 4, k, k), &dev)?;
            let ours = conv2d_same_nhwc(&x, &wt, None)?;
            let theirs = x
                .permute((0, 3, 1, 2))?
                .conv2d(&wt, k / 2, 1, 1, 1)?
                .permute((0, 2, 3, 1))?;
            let d = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "({h},{w},{k}): forward differs by {d}");
            let g = Tensor::randn(0f32, 1., ours.dims(), &dev)?;
            let ga = (&ours * &g)?.sum_all()?.backward()?;
            let gb = (&theirs * &g)?.sum_all()?.backward()?;
            let (a, e) = (ga.get(&x).unwrap(), gb.get(&x).unwrap());
            let d = (a - e)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-3, "({h},{w},{k}): input gradient differs by {d}");
            assert!(ga.get(&wt).is_none(), "a frozen weight got a gradient");
        }
        Ok(())
    }

    #[test]
    fn rejects_even_or_mismatched_kernels_and_biases() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 4, 2), candle_core::DType::F32, &dev).unwrap();
        let even = Tensor::zeros((1, 2, 2, 2), candle_core::DType::F32, &dev).unwrap();
        let wrong_c = Tensor::zeros((1, 3, 3, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d_same_nhwc(&x, &even, None).is_err());
        assert!(conv2d_same_nhwc(&x, &wrong_c, None).is_err());
        // a bias that does not fit the output channels (the fused kernel would fill with it)
        let w = Tensor::zeros((4, 2, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d_same_nhwc(&x, &w, Some(&b)).is_err());
    }
}
