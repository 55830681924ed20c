//! The transformer block's MLP: `lin2(GELU(lin1(x)))` with the exact (erf) GELU.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use masam_nn::{linear, Linear};

use crate::extension::{BlockContext, LinearHook};

/// SAM's `MLPBlock`: `lin1` (C → hidden) → GELU (erf) → `lin2` (hidden → C), both with bias.
///
/// # Shapes
/// - `x`: (…, C); returns (…, C)
#[derive(Debug, Clone)]
pub struct Mlp {
    /// First layer, C → hidden.
    pub lin1: Linear,
    /// Second layer, hidden → C.
    pub lin2: Linear,
}

impl Mlp {
    /// Builds the MLP from `vb` (names `lin1.*`, `lin2.*`).
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            lin1: linear(dim, hidden, vb.pp("lin1"))?,
            lin2: linear(hidden, dim, vb.pp("lin2"))?,
        })
    }

    /// Plain forward pass.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.lin2
            .forward(&masam_nn::gelu_erf(&self.lin1.forward(x)?)?)
    }

    /// Forward pass with optional hooks around each layer (see [`crate::extension`]).
    pub fn forward_with_hooks(
        &self,
        x: &Tensor,
        fc1: Option<&dyn LinearHook>,
        fc2: Option<&dyn LinearHook>,
        ctx: &BlockContext,
    ) -> Result<Tensor> {
        let h = self.lin1.forward(x)?;
        let h = match fc1 {
            Some(hook) => hook.forward(x, &h, ctx)?,
            None => h,
        };
        let g = masam_nn::gelu_erf(&h)?;
        let y = self.lin2.forward(&g)?;
        match fc2 {
            Some(hook) => hook.forward(&g, &y, ctx),
            None => Ok(y),
        }
    }
}
