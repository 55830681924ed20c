//! A frozen linear layer with FacT increments, and its merged (zero-overhead) form.

use candle_core::{ModuleT, Result as CResult, Tensor};
use masam_nn::FrozenLinear;

use crate::error::{FactError, Result};
use crate::hook::FactHook;

/// `y = x·Wᵀ + b + s·Δ(x)` (Δ in the hook's column ranges) around any frozen linear layer.
///
/// The frozen part is a [`FrozenLinear`], so backward computes no gradient for `W` or `b`. For
/// inference, [`FactLinear::merge`] folds the increment into the weight (`W' = W + s·ΔW`) so the
/// forward costs exactly one plain linear; [`FactLinear::unmerge`] restores the factored form
/// (the original `W` is kept, so unmerging is exact). While merged, the factors must not be
/// changed, and the forward is the evaluation-mode one (no dropout).
///
/// ```
/// use candle_core::{DType, Device, Module, Tensor};
/// use masam_fact::{Fact, FactConfig, FactLinear};
/// use masam_nn::{FrozenLinear, SeededVarMap};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = Device::Cpu;
/// let params = SeededVarMap::new(0);
/// // Make V non-zero, as after some training.
/// params.insert("FacTv.weight", &Tensor::ones((8, 4), DType::F32, &dev)?)?;
/// let fact = Fact::new(&FactConfig::tiny(), 8, 1, params.var_builder(DType::F32, &dev))?;
/// let qkv = FrozenLinear::new(Tensor::randn(0f32, 1., (24, 8), &dev)?, None);
/// let mut layer = FactLinear::new(qkv, fact.qkv(0)?.unwrap())?;
/// let x = Tensor::randn(0f32, 1., (5, 8), &dev)?;
/// let unmerged = layer.forward(&x, false)?;
/// layer.merge()?;
/// let merged = layer.forward(&x, false)?;
/// let err: f32 = (unmerged - merged)?.abs()?.max_all()?.to_scalar()?;
/// assert!(err < 1e-4);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FactLinear {
    base: FrozenLinear,
    hook: FactHook,
    merged: Option<FrozenLinear>,
}

impl FactLinear {
    /// Wraps `base` (weight (out, in)) with the increments of `hook`.
    pub fn new(base: FrozenLinear, hook: FactHook) -> Result<Self> {
        let (out, inp) = base.weight().dims2()?;
        if inp != hook.in_features() || out < hook.min_out_features() {
            return Err(FactError::ShapeMismatch {
                what: "FactLinear base weight".into(),
                expected: vec![hook.min_out_features(), hook.in_features()],
                got: vec![out, inp],
            });
        }
        Ok(Self {
            base,
            hook,
            merged: None,
        })
    }

    /// The frozen layer (original weight, even while merged).
    pub fn base(&self) -> &FrozenLinear {
        &self.base
    }

    /// The increments.
    pub fn hook(&self) -> &FactHook {
        &self.hook
    }

    /// True after [`FactLinear::merge`].
    pub fn is_merged(&self) -> bool {
        self.merged.is_some()
    }

    /// Applies the layer; dropout on the increments when `train` is set. While merged, one
    /// plain linear with `W'` (and `train` is ignored).
    ///
    /// # Shapes
    /// - `x`: (…, in); returns (…, out)
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        if let Some(m) = &self.merged {
            return m.forward(x);
        }
        let y = self.base.forward(x)?;
        self.hook.forward(x, &y, train)
    }

    /// The merged layer `x·(W + s·ΔW)ᵀ + b` as a plain frozen linear.
    pub fn merged_linear(&self) -> CResult<FrozenLinear> {
        let w = self.hook.merge_weight(self.base.weight())?;
        Ok(FrozenLinear::new(w, self.base.bias().cloned()))
    }

    /// Folds the increment into the weight (with the factors' current values).
    pub fn merge(&mut self) -> CResult<()> {
        self.merged = Some(self.merged_linear()?);
        Ok(())
    }

    /// Returns to the factored form.
    pub fn unmerge(&mut self) {
        self.merged = None;
    }
}

impl ModuleT for FactLinear {
    fn forward_t(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        self.forward(x, train)
    }
}
