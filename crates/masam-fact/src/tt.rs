//! FacT-TT: one core per adapted projection and block.

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::config::FactConfig;
use crate::error::Result;
use crate::projection::Projection;

/// FacT-TT's per-block cores, `blocks.{i}.{p}_FacTs.weight` under the builder, each in
/// bias-free linear-weight layout (see [`crate::Increment`]): (r, r) for q, k, v, proj,
/// (m·r, r) for fc1, (r, m·r) for fc2. Initialised like PyTorch's `nn.Linear`: uniform in
/// ±1/√(fan_in), fan_in = r (m·r for fc2).
#[derive(Debug, Clone)]
pub struct TtCores {
    cores: Vec<BTreeMap<Projection, Tensor>>,
}

impl TtCores {
    /// Creates (or fetches) every core under `vb`.
    pub fn new(cfg: &FactConfig, depth: usize, vb: VarBuilder) -> Result<Self> {
        let r = cfg.rank;
        let mut cores = Vec::with_capacity(depth);
        for i in 0..depth {
            let vb_i = vb.pp("blocks").pp(i.to_string());
            let mut m = BTreeMap::new();
            for p in cfg.sorted_targets() {
                let (m_in, m_out) = p.chunks(cfg.mlp_ratio);
                let b = 1.0 / ((m_in * r) as f64).sqrt();
                let t = vb_i.pp(format!("{}_FacTs", p.name())).get_with_hints(
                    (m_out * r, m_in * r),
                    "weight",
                    Init::Uniform { lo: -b, up: b },
                )?;
                m.insert(p, t);
            }
            cores.push(m);
        }
        Ok(Self { cores })
    }

    /// The core of `projection` in `block`, if adapted.
    pub fn core(&self, block: usize, projection: Projection) -> Option<&Tensor> {
        self.cores.get(block)?.get(&projection)
    }

    /// Number of blocks.
    pub fn depth(&self) -> usize {
        self.cores.len()
    }
}
