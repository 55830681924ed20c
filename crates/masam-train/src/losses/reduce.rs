//! Accurate per-class sums over large (N, K, S) tensors.

use candle_core::{Result, Tensor};

/// Block length of the first summation stage.
const BLOCK: usize = 4096;

/// Σ over N and S of an (N, K, S) tensor → (K), differentiable.
///
/// candle's CPU reduction accumulates sequentially in the tensor's dtype, so a single f32 sum over
/// the 31 M pixels of a reference batch (120 × 512 × 512) would drift by far more than the
/// fixtures' tolerance. Summing blocks of at most 4096 first, then the block sums, then the batch
/// keeps every running sum short. S is zero-padded to a multiple of the block when needed.
///
/// # Shapes
/// - `x`: (N, K, S)
/// - returns: (K)
pub fn sum_batch_and_space(x: &Tensor) -> Result<Tensor> {
    let (n, k, s) = x.dims3()?;
    let per_class = if s > BLOCK {
        let rem = s % BLOCK;
        let x = if rem == 0 {
            x.clone()
        } else {
            x.pad_with_zeros(2, 0, BLOCK - rem)?
        };
        let blocks = x.dim(2)? / BLOCK;
        x.reshape((n, k, blocks, BLOCK))?.sum(3)?.sum(2)?
    } else {
        x.sum(2)?
    };
    per_class.sum(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_f64_sum_on_long_rows() -> Result<()> {
        let s = 3 * 4096 + 123;
        let vals: Vec<f32> = (0..2 * 2 * s)
            .map(|i| 0.1 + (i % 7) as f32 * 0.01)
            .collect();
        let x = Tensor::from_vec(vals.clone(), (2, 2, s), &Device::Cpu)?;
        let got: Vec<f32> = sum_batch_and_space(&x)?.to_vec1()?;
        for c in 0..2 {
            let mut want = 0f64;
            for b in 0..2 {
                for i in 0..s {
                    want += vals[(b * 2 + c) * s + i] as f64;
                }
            }
            assert!(
                (got[c] as f64 - want).abs() / want < 1e-6,
                "{} vs {want}",
                got[c]
            );
        }
        Ok(())
    }

    #[test]
    fn gradient_is_ones() -> Result<()> {
        let x = Var::ones((1, 2, 5000), candle_core::DType::F32, &Device::Cpu)?;
        let w = Tensor::new(&[1f32, 3.], &Device::Cpu)?;
        let g = (sum_batch_and_space(x.as_tensor())? * w)?
            .sum_all()?
            .backward()?;
        let g = g.get(x.as_tensor()).unwrap();
        assert_eq!(g.dims(), &[1, 2, 5000]);
        let v: Vec<Vec<f32>> = g.squeeze(0)?.to_vec2()?;
        assert!(v[0].iter().all(|&a| a == 1.0) && v[1].iter().all(|&a| a == 3.0));
        Ok(())
    }
}
