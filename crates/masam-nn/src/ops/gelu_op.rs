//! Fused exact GELU (CPU, `f32`) with a one-pass backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, ensure_cpu_f32, exp_nonpositive};

/// Elements per rayon task.
const CHUNK: usize = 16 * 1024;

/// `1/√2`.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`, the standard normal density at 0.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Exact (erf) GELU, `x · Φ(x)`, as one custom op (CPU `f32` only).
///
/// candle's `gelu_erf` records a backward made of about ten full-size tensor ops; here the
/// forward is one pass and the backward one more, `dx = g · (Φ(x) + x·φ(x))`. `Φ` uses the
/// Abramowitz–Stegun 7.1.26 form of `erf` (absolute error below 1.5e-7, i.e. about one `f32`
/// ulp of `Φ` near 1) with one vectorisable `exp` that the backward's density `φ` shares.
/// [`crate::gelu_erf`] calls this on CPU `f32` tensors and candle's `gelu_erf` elsewhere.
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[-1f32, 0., 2.], &Device::Cpu).unwrap();
/// let y = masam_nn::ops::gelu_erf_fused(&x).unwrap().to_vec1::<f32>().unwrap();
/// assert!((y[0] + 0.158_655_25).abs() < 1e-6 && y[1] == 0.0 && (y[2] - 1.954_5).abs() < 1e-4);
/// ```
pub fn gelu_erf_fused(x: &Tensor) -> Result<Tensor> {
    ensure_cpu_f32(x, "gelu_erf_fused")?;
    x.contiguous()?.apply_op1(GeluErf)
}

/// `(Φ(x), e^{−x²/2})`: the normal CDF and the unnormalised density, sharing one `exp`.
#[inline(always)]
fn cdf_and_gauss(x: f32) -> (f32, f32) {
    // erf(z) = 1 − t·P(t)·e^{−z²}, t = 1/(1 + p·z), z = |x|/√2 ≥ 0 (A&S 7.1.26).
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let z = x.abs() * FRAC_1_SQRT_2;
    let gauss = exp_nonpositive(-z * z);
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    // Φ(−|x|) = ½·erfc(z).
    let tail = 0.5 * poly * gauss;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, gauss)
}

super::simd::multiversion! {
    /// `ys = xs·Φ(xs)` element-wise, in the widest vector build the CPU runs.
    fn gelu_chunk(xs: &[f32], ys: &mut [std::mem::MaybeUninit<f32>]) {
        for (o, &v) in ys.iter_mut().zip(xs) {
            o.write(v * cdf_and_gauss(v).0);
        }
    }
}

/// Forward op: `x ↦ x·Φ(x)`.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "masam-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let y = super::par_new_f32(x.len(), CHUNK, |i, ys| {
            gelu_chunk(&x[i * CHUNK..i * CHUNK + ys.len()], ys)
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &GeluErfBwd)?;
        Ok(Some(g))
    }
}

/// Backward op: `(x, g) ↦ g · (Φ(x) + x·φ(x))`.
struct GeluErfBwd;

impl CustomOp2 for GeluErfBwd {
    fn name(&self) -> &'static str {
        "masam-gelu-erf-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        if x.len() != g.len() {
            candle_core::bail!(
                "{}: input has {} elements, gradient {}",
                self.name(),
                x.len(),
                g.len()
            );
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(ds, (xs, gs))| {
                for ((d, &v), &gv) in ds.iter_mut().zip(xs).zip(gs) {
                    let (cdf, gauss) = cdf_and_gauss(v);
                    *d = gv * (cdf + v * FRAC_1_SQRT_2PI * gauss);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn erf64(x: f64) -> f64 {
        // Series for small |x|, continued fraction-free asymptotic via erfc otherwise: plenty
        // accurate for checking an f32 approximation (Taylor to 1e-16 for |x| ≤ 3, erfc tail else).
        if x.abs() <= 3.0 {
            let mut sum = 0f64;
            let mut term = x;
            let mut n = 0f64;
            while term.abs() > 1e-18 * sum.abs().max(1e-300) || n < 3.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
                if n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(z) ≈ e^{-z²}/(z√π) · (1 − 1/(2z²) + 3/(4z⁴) − 15/(8z⁶) + 105/(16z⁸)).
            let z = x.abs();
            let z2 = z * z;
            let s = 1.0 - 1.0 / (2.0 * z2) + 3.0 / (4.0 * z2 * z2) - 15.0 / (8.0 * z2.powi(3))
                + 105.0 / (16.0 * z2.powi(4));
            let erfc = (-z2).exp() / (z * std::f64::consts::PI.sqrt()) * s;
            x.signum() * (1.0 - erfc)
        }
    }

    #[test]
    fn matches_exact_gelu_and_its_derivative() {
        let mut worst_y = 0f64;
        let mut worst_d = 0f64;
        let mut v = -12f32;
        while v < 12.0 {
            let (cdf, gauss) = cdf_and_gauss(v);
            let x = v as f64;
            let phi = 0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2));
            let dens = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst_y = worst_y.max(((v * cdf) as f64 - x * phi).abs() / x.abs().max(1.0));
            let d = (cdf + v * FRAC_1_SQRT_2PI * gauss) as f64;
            worst_d = worst_d.max((d - (phi + x * dens)).abs());
            v += 0.001_37;
        }
        assert!(worst_y < 4e-7, "GELU error {worst_y:e}");
        assert!(worst_d < 6e-7, "GELU' error {worst_d:e}");
    }

    #[test]
    fn agrees_with_candle_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (37, 41), &dev)?))?;
        let g = Tensor::randn(0f32, 1.0, (37, 41), &dev)?;
        let ours = gelu_erf_fused(&x)?;
        let theirs = x.as_tensor().gelu_erf()?;
        let dy = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(dy < 1e-6, "forward differs by {dy}");
        let ga = (&ours * &g)?.sum_all()?.backward()?;
        let gb = (&theirs * &g)?.sum_all()?.backward()?;
        let (ga, gb) = (ga.get(&x).unwrap(), gb.get(&x).unwrap());
        let dg = (ga - gb)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(dg < 2e-6, "gradient differs by {dg}");
        Ok(())
    }

    #[test]
    fn strided_input_is_made_contiguous() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (5, 7), &Device::Cpu)?.t()?;
        let a = gelu_erf_fused(&x)?;
        let b = x.gelu_erf()?;
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6);
        Ok(())
    }
}
