//! Newtypes that plug FacT and the 3D adapters into masam-sam's block extension points.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use masam_conv3d::Adapter3d;
use masam_fact::FactHook;
use masam_sam::{BlockContext, LinearHook, TokenHook};

/// A 3D adapter as a [`TokenHook`]: `x + Adapter(x)`, with D taken from the block context.
#[derive(Debug, Clone)]
pub struct AdapterHook(pub Arc<Adapter3d>);

impl TokenHook for AdapterHook {
    fn forward(&self, x: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
        // mixed precision: the adapter computes in the compute dtype, the sum stays in the
        // residual stream's dtype
        let delta = self
            .0
            .delta_in(x, ctx.slices, ctx.compute_dtype(x))
            .map_err(|e| {
                candle_core::Error::wrap(e).context(format!("3D adapter in block {}", ctx.block))
            })?;
        x + delta.to_dtype(x.dtype())?
    }
}

/// FacT increments around a frozen projection as a [`LinearHook`]: `y + s·Δ(x)` in the adapted
/// column ranges, with dropout in training mode.
#[derive(Debug, Clone)]
pub struct FactLinearHook(pub FactHook);

impl LinearHook for FactLinearHook {
    fn forward(&self, x: &Tensor, y: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
        self.0.forward(x, y, ctx.train)
    }
}
