//! FacT-TK: a shared r×r×r core tensor mixed per projection by the columns of `FacTp`.

use std::collections::BTreeMap;

use candle_core::{Result as CResult, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::config::FactConfig;
use crate::error::Result;
use crate::projection::Projection;

/// FacT-TK's parameters: the core tensor `FacTc` (r, r, r) and the mixing matrix `FacTp`
/// (r, n), n = depth × columns per block. Block i's projection p uses the columns
/// `[col, col + n_p)` (n_p = 1 for q, k, v, proj and m for fc1, fc2), laid out per block in
/// the order q, k, v, proj, fc1, fc2 (adapted ones only): with every projection adapted on
/// ViT-B this is PETL-ViT's 144-column layout.
///
/// The per-module core is `T = FacTc ×₃ FacTp[:, col..col+n_p]`, shape (r, r, n_p),
/// `T[a, b, k] = Σ_c FacTc[a, b, c] · FacTp[c, col + k]`, used as in PETL-ViT:
/// - q, k, v, proj: `Δ = V(dp(Ux · T[:, :, 0]))`, i.e. the linear-weight core `S = T[:, :, 0]ᵀ`;
/// - fc1: `M = T.reshape(r, m·r)`, `Δ = V(dp(Ux · M))` chunked, i.e. `S = Mᵀ`;
/// - fc2: `M = T.reshape(r, m·r)`, `Δ = V(dp(Ux_chunks · Mᵀ))`, i.e. `S = M`.
///
/// Both tensors are initialised with PyTorch's `xavier_uniform_`.
#[derive(Debug, Clone)]
pub struct TkCores {
    c: Tensor,
    p: Tensor,
    rank: usize,
    mlp_ratio: usize,
    columns: Vec<BTreeMap<Projection, usize>>,
}

impl TkCores {
    /// Creates (or fetches) `FacTc` and `FacTp` under `vb`.
    pub fn new(cfg: &FactConfig, depth: usize, vb: VarBuilder) -> Result<Self> {
        let r = cfg.rank;
        let per_block = cfg.tk_columns_per_block();
        let n = depth * per_block;
        // xavier_uniform: bound = sqrt(6 / (fan_in + fan_out)); for (r, r, r) the receptive
        // field is r, so fan_in = fan_out = r·r.
        let bc = (6.0 / (2.0 * (r * r) as f64)).sqrt();
        let c = vb.get_with_hints((r, r, r), "FacTc", Init::Uniform { lo: -bc, up: bc })?;
        let bp = (6.0 / ((r + n.max(1)) as f64)).sqrt();
        let p = vb.get_with_hints((r, n), "FacTp", Init::Uniform { lo: -bp, up: bp })?;
        let mut columns = Vec::with_capacity(depth);
        let mut col = 0;
        for _ in 0..depth {
            let mut m = BTreeMap::new();
            for proj in cfg.sorted_targets() {
                m.insert(proj, col);
                col += proj.tk_columns(cfg.mlp_ratio);
            }
            columns.push(m);
        }
        Ok(Self {
            c,
            p,
            rank: r,
            mlp_ratio: cfg.mlp_ratio,
            columns,
        })
    }

    /// The core tensor `FacTc`, shape (r, r, r).
    pub fn core_tensor(&self) -> &Tensor {
        &self.c
    }

    /// The mixing matrix `FacTp`, shape (r, n).
    pub fn mixing(&self) -> &Tensor {
        &self.p
    }

    /// First `FacTp` column of `projection` in `block`, if adapted.
    pub fn column(&self, block: usize, projection: Projection) -> Option<usize> {
        self.columns.get(block)?.get(&projection).copied()
    }

    /// The linear-weight core `S` of `projection` in `block` (see [`crate::Increment`]).
    pub fn core(&self, block: usize, projection: Projection) -> CResult<Tensor> {
        let r = self.rank;
        let Some(col) = self.column(block, projection) else {
            candle_core::bail!(
                "FacT-TK: projection {:?} of block {block} is not adapted",
                projection
            )
        };
        let n = projection.tk_columns(self.mlp_ratio);
        let p = self.p.narrow(1, col, n)?;
        let t = self.c.reshape((r * r, r))?.matmul(&p)?; // (r·r, n) = T[a, b, k]
        match projection {
            Projection::Fc1 => t.reshape((r, r * n))?.t(),
            Projection::Fc2 => t.reshape((r, r * n)),
            _ => t.reshape((r, r))?.t(),
        }
    }
}
