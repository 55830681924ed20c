//! The shared factors U (C → r) and V (r → C), owned once per model.

use candle_core::{Result as CResult, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::error::{FactError, Result};

/// FacT's shared factors: `U = FacTu.weight` of shape (r, C) (a bias-free C → r linear) and
/// `V = FacTv.weight` of shape (C, r) (a bias-free r → C linear). Every adapted projection of
/// every block uses the same pair; hold it behind an `Arc`.
///
/// Initialised as the reference: U uniform in ±1/√C (PyTorch's `nn.Linear` default), V zero,
/// so every increment is zero at the start of fine-tuning.
#[derive(Debug, Clone)]
pub struct SharedFactors {
    u: Tensor,
    v: Tensor,
}

/// `x (…, in) · wᵀ` for a weight `w` of shape (out, in), as one 2-D matmul in `x`'s dtype
/// (`w` is converted to it: f32 factors serve a bf16 or f16 forward pass).
pub(crate) fn matmul_last(x: &Tensor, w: &Tensor) -> CResult<Tensor> {
    if masam_nn::ops::fusable(&[x, w]) {
        // reads (…, in) in place: no reshape nodes of the input's and output's size
        return masam_nn::ops::linear_fused(x, w, None);
    }
    let (out_dim, in_dim) = w.dims2()?;
    let dims = x.dims();
    let lead = &dims[..dims.len().saturating_sub(1)];
    let rows: usize = lead.iter().product();
    let y = x
        .reshape((rows, in_dim))?
        .matmul(&w.to_dtype(x.dtype())?.t()?)?;
    let mut shape = lead.to_vec();
    shape.push(out_dim);
    y.reshape(shape)
}

impl SharedFactors {
    /// Creates (or fetches) `FacTu.weight` (r, C) and `FacTv.weight` (C, r) under `vb`.
    pub fn new(dim: usize, rank: usize, vb: VarBuilder) -> Result<Self> {
        if dim == 0 || rank == 0 {
            return Err(FactError::InvalidConfig(format!(
                "dim ({dim}) and rank ({rank}) must be positive"
            )));
        }
        let b = 1.0 / (dim as f64).sqrt();
        let u = vb.pp("FacTu").get_with_hints(
            (rank, dim),
            "weight",
            Init::Uniform { lo: -b, up: b },
        )?;
        let v = vb
            .pp("FacTv")
            .get_with_hints((dim, rank), "weight", Init::Const(0.0))?;
        Ok(Self { u, v })
    }

    /// Wraps existing tensors: `u` (r, C) and `v` (C, r).
    pub fn from_tensors(u: Tensor, v: Tensor) -> Result<Self> {
        let (r, c) = u.dims2()?;
        let got = v.dims().to_vec();
        if got != [c, r] {
            return Err(FactError::ShapeMismatch {
                what: "FacTv.weight".into(),
                expected: vec![c, r],
                got,
            });
        }
        Ok(Self { u, v })
    }

    /// U = `FacTu.weight`, shape (r, C).
    pub fn u(&self) -> &Tensor {
        &self.u
    }

    /// V = `FacTv.weight`, shape (C, r).
    pub fn v(&self) -> &Tensor {
        &self.v
    }

    /// Embedding width C.
    pub fn dim(&self) -> usize {
        self.u.dims()[1]
    }

    /// Rank r.
    pub fn rank(&self) -> usize {
        self.u.dims()[0]
    }

    /// `x · Uᵀ`: (…, C) → (…, r).
    pub fn project_in(&self, x: &Tensor) -> CResult<Tensor> {
        matmul_last(x, &self.u)
    }

    /// `h · Vᵀ`: (…, r) → (…, C).
    pub fn project_out(&self, h: &Tensor) -> CResult<Tensor> {
        matmul_last(h, &self.v)
    }
}
