//! SAM's random-Fourier positional encoding (`PositionEmbeddingRandom`).
//!
//! A point `(x, y)` in `[0, 1]²` is mapped to `c = (2·[x, y] − 1) · G · 2π`, where `G` is the
//! stored Gaussian matrix of shape (2, F), and encoded as `cat[sin c, cos c]` (2F channels). The
//! matrix is a buffer of the official checkpoint
//! (`prompt_encoder.pe_layer.positional_encoding_gaussian_matrix`), so it is loaded, not drawn.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// Random-Fourier positional encoding with a stored (2, F) Gaussian matrix.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_sam::PositionEmbeddingRandom;
/// # fn main() -> candle_core::Result<()> {
/// let g = Tensor::ones((2, 4), DType::F32, &Device::Cpu)?;
/// let pe = PositionEmbeddingRandom::from_matrix(g)?;
/// let dense = pe.forward(3, 5)?; // (8, 3, 5): sin for the first 4 channels, cos for the rest
/// assert_eq!(dense.dims(), &[8, 3, 5]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PositionEmbeddingRandom {
    gaussian: Tensor,
}

impl PositionEmbeddingRandom {
    /// Loads (or, from a fresh `VarMap`, draws from N(0, 1)) the matrix
    /// `positional_encoding_gaussian_matrix` of shape (2, `num_pos_feats`) under `vb`.
    pub fn new(num_pos_feats: usize, vb: VarBuilder) -> Result<Self> {
        let gaussian = vb.get_with_hints(
            (2, num_pos_feats),
            "positional_encoding_gaussian_matrix",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        // A buffer in PyTorch, never trained: keep it out of the autograd graph.
        Self::from_matrix(gaussian.detach())
    }

    /// Builds the encoding from a (2, F) matrix.
    pub fn from_matrix(gaussian: Tensor) -> Result<Self> {
        let (two, _) = gaussian.dims2()?;
        if two != 2 {
            candle_core::bail!(
                "positional encoding matrix must have shape (2, F), got {:?}",
                gaussian.dims()
            );
        }
        Ok(Self { gaussian })
    }

    /// The Gaussian matrix, shape (2, F).
    pub fn gaussian_matrix(&self) -> &Tensor {
        &self.gaussian
    }

    /// Number of output channels, 2F.
    pub fn out_dim(&self) -> usize {
        2 * self.gaussian.dims()[1]
    }

    /// Encodes points already normalised to `[0, 1]`.
    ///
    /// # Shapes
    /// - `coords`: (…, 2), `[x, y]`; returns (…, 2F)
    pub fn pe_encoding(&self, coords: &Tensor) -> Result<Tensor> {
        let coords = coords.to_dtype(self.gaussian.dtype())?;
        let c = ((coords * 2.0)? - 1.0)?;
        let c = c.broadcast_matmul(&self.gaussian)?;
        // PyTorch multiplies an f32 tensor by the Python float 2π, i.e. by f32(2π).
        let c = (c * (2.0 * std::f64::consts::PI))?;
        Tensor::cat(&[c.sin()?, c.cos()?], D::Minus1)
    }

    /// The dense encoding of an `h × w` grid, sampled at cell centres
    /// `x_j = (j + 0.5)/w`, `y_i = (i + 0.5)/h`.
    ///
    /// # Shapes
    /// - returns (2F, h, w)
    pub fn forward(&self, h: usize, w: usize) -> Result<Tensor> {
        let dev = self.gaussian.device();
        let dtype = self.gaussian.dtype();
        let xs: Vec<f32> = (0..w).map(|j| (j as f32 + 0.5) / w as f32).collect();
        let ys: Vec<f32> = (0..h).map(|i| (i as f32 + 0.5) / h as f32).collect();
        let x = Tensor::from_vec(xs, (1, w, 1), dev)?.broadcast_as((h, w, 1))?;
        let y = Tensor::from_vec(ys, (h, 1, 1), dev)?.broadcast_as((h, w, 1))?;
        let coords = Tensor::cat(&[x, y], 2)?.to_dtype(dtype)?;
        self.pe_encoding(&coords)?.permute((2, 0, 1))?.contiguous()
    }

    /// Encodes points given in pixels of an image of size `image_size = (H, W)`: `x` is divided
    /// by W and `y` by H, then [`pe_encoding`](Self::pe_encoding) is applied. No shift is added
    /// here (the prompt encoder adds SAM's +0.5 before calling this).
    ///
    /// # Shapes
    /// - `coords`: (B, N, 2) `[x, y]` in pixels; returns (B, N, 2F)
    pub fn forward_with_coords(
        &self,
        coords: &Tensor,
        image_size: (usize, usize),
    ) -> Result<Tensor> {
        let (h, w) = image_size;
        let coords = coords.to_dtype(DType::F32)?;
        let scale = Tensor::new(&[w as f32, h as f32], coords.device())?;
        let coords = coords.broadcast_div(&scale)?;
        self.pe_encoding(&coords)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn dense_grid_matches_formula() -> Result<()> {
        let dev = Device::Cpu;
        let g = Tensor::new(&[[0.3f32, -1.2, 0.7], [2.0, 0.1, -0.4]], &dev)?;
        let pe = PositionEmbeddingRandom::from_matrix(g.clone())?;
        let d = pe.forward(2, 3)?;
        assert_eq!(d.dims(), &[6, 2, 3]);
        let gv: Vec<Vec<f32>> = g.to_vec2()?;
        let dv: Vec<Vec<Vec<f32>>> = d.to_vec3()?;
        for i in 0..2 {
            for j in 0..3 {
                let x = 2.0 * ((j as f32 + 0.5) / 3.0) - 1.0;
                let y = 2.0 * ((i as f32 + 0.5) / 2.0) - 1.0;
                for f in 0..3 {
                    let c = (x * gv[0][f] + y * gv[1][f]) * std::f32::consts::TAU;
                    assert!((dv[f][i][j] - c.sin()).abs() < 1e-5);
                    assert!((dv[f + 3][i][j] - c.cos()).abs() < 1e-5);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_matrix() {
        let g = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(PositionEmbeddingRandom::from_matrix(g).is_err());
    }
}
