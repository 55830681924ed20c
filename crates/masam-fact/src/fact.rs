//! The model-level FacT parameters: shared factors plus per-block cores.

use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::{FactConfig, FactKind};
use crate::dropout_rng::DropoutRng;
use crate::error::{FactError, Result};
use crate::factors::SharedFactors;
use crate::hook::FactHook;
use crate::increment::{CoreSource, Increment};
use crate::projection::Projection;
use crate::tk::TkCores;
use crate::tt::TtCores;

#[derive(Debug, Clone)]
enum Cores {
    Tt(TtCores),
    Tk(Arc<TkCores>),
}

/// FacT for a ViT of width C and `depth` blocks: the shared factors U, V (owned once, behind
/// an `Arc`) and the cores of every adapted projection, as FacT-TT or FacT-TK.
///
/// Parameters are created through the `VarBuilder` (trainable when it is backed by a
/// `VarMap`/[`masam_nn::SeededVarMap`]) with these names under it:
/// `FacTu.weight` (r, C), `FacTv.weight` (C, r), and either `blocks.{i}.{p}_FacTs.weight`
/// (TT, `p` in q, k, v, proj, fc1, fc2) or `FacTc` (r, r, r) and `FacTp` (r, n) (TK).
/// [`crate::ReferenceFormat`] translates them to and from MA-SAM's checkpoint keys.
///
/// Per block, [`Fact::qkv`], [`Fact::proj`], [`Fact::fc1`] and [`Fact::fc2`] give the hook to
/// put around the corresponding frozen linear layer.
///
/// ```
/// use candle_core::{DType, Device};
/// use masam_fact::{Fact, FactConfig, Projection};
/// use masam_nn::SeededVarMap;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let params = SeededVarMap::new(42);
/// let fact = Fact::new(&FactConfig::tiny(), 64, 4, params.var_builder(DType::F32, &Device::Cpu))?;
/// // U, V and a q and a v core per block.
/// assert_eq!(params.vars().all_vars().len(), 2 + 2 * 4);
/// assert_eq!(fact.tt_core(3, Projection::V).unwrap().dims(), &[4, 4]);
/// assert!(fact.proj(0)?.is_none()); // MA-SAM adapts q and v only
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Fact {
    cfg: FactConfig,
    depth: usize,
    factors: Arc<SharedFactors>,
    cores: Cores,
    dropout: Arc<DropoutRng>,
}

impl Fact {
    /// Builds FacT for a ViT of width `dim` with `depth` blocks.
    pub fn new(cfg: &FactConfig, dim: usize, depth: usize, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let factors = Arc::new(SharedFactors::new(dim, cfg.rank, vb.clone())?);
        let cores = match cfg.kind {
            FactKind::Tt => Cores::Tt(TtCores::new(cfg, depth, vb)?),
            FactKind::Tk => Cores::Tk(Arc::new(TkCores::new(cfg, depth, vb)?)),
        };
        Ok(Self {
            cfg: cfg.clone(),
            depth,
            factors,
            cores,
            dropout: Arc::new(DropoutRng::new(0)),
        })
    }

    /// The dropout masks' source shared by all increments: seed it with the run seed
    /// ([`DropoutRng::reseed`]) and start each training step with [`DropoutRng::begin_step`].
    pub fn dropout_rng(&self) -> &Arc<DropoutRng> {
        &self.dropout
    }

    /// The configuration.
    pub fn config(&self) -> &FactConfig {
        &self.cfg
    }

    /// Embedding width C.
    pub fn dim(&self) -> usize {
        self.factors.dim()
    }

    /// Number of blocks.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The shared factors U and V.
    pub fn factors(&self) -> &Arc<SharedFactors> {
        &self.factors
    }

    /// FacT-TT's cores (`None` for TK).
    pub fn tt_cores(&self) -> Option<&TtCores> {
        match &self.cores {
            Cores::Tt(t) => Some(t),
            Cores::Tk(_) => None,
        }
    }

    /// FacT-TK's core tensor and mixing matrix (`None` for TT).
    pub fn tk_cores(&self) -> Option<&Arc<TkCores>> {
        match &self.cores {
            Cores::Tk(t) => Some(t),
            Cores::Tt(_) => None,
        }
    }

    /// FacT-TT's core for `projection` in `block` (MA-SAM's `q_FacTs[i]`, `v_FacTs[i]`).
    pub fn tt_core(&self, block: usize, projection: Projection) -> Option<&Tensor> {
        self.tt_cores()?.core(block, projection)
    }

    /// Every parameter with its name under the builder, in a fixed order: U, V, then the cores
    /// (TT: by block, then projection; TK: `FacTc`, `FacTp`).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("FacTu.weight".to_string(), self.factors.u().clone()),
            ("FacTv.weight".to_string(), self.factors.v().clone()),
        ];
        match &self.cores {
            Cores::Tt(tt) => {
                for i in 0..self.depth {
                    for p in self.cfg.sorted_targets() {
                        if let Some(t) = tt.core(i, p) {
                            out.push((format!("blocks.{i}.{}_FacTs.weight", p.name()), t.clone()));
                        }
                    }
                }
            }
            Cores::Tk(tk) => {
                out.push(("FacTc".to_string(), tk.core_tensor().clone()));
                out.push(("FacTp".to_string(), tk.mixing().clone()));
            }
        }
        out
    }

    fn check_block(&self, block: usize) -> Result<()> {
        if block >= self.depth {
            return Err(FactError::BlockOutOfRange {
                block,
                depth: self.depth,
            });
        }
        Ok(())
    }

    /// The increment of `projection` in `block`.
    pub fn increment(&self, block: usize, projection: Projection) -> Result<Increment> {
        self.check_block(block)?;
        if !self.cfg.adapts(projection) {
            return Err(FactError::NotAdapted(projection));
        }
        let core = match &self.cores {
            Cores::Tt(tt) => CoreSource::Tt(
                tt.core(block, projection)
                    .ok_or(FactError::NotAdapted(projection))?
                    .clone(),
            ),
            Cores::Tk(tk) => CoreSource::Tk {
                tk: tk.clone(),
                block,
                projection,
            },
        };
        Ok(Increment::from_source(
            self.factors.clone(),
            core,
            projection,
            self.cfg.mlp_ratio,
            self.cfg.scale,
            self.cfg.dropout,
            self.dropout.clone(),
        ))
    }

    /// A hook adding the increments of `placements` (projection, first output column) of
    /// `block`; for layers laid out differently from a fused `[q | k | v]`.
    pub fn hook(&self, block: usize, placements: &[(Projection, usize)]) -> Result<FactHook> {
        let parts = placements
            .iter()
            .map(|(p, col)| Ok((*col, self.increment(block, *p)?)))
            .collect::<Result<Vec<_>>>()?;
        FactHook::new(parts)
    }

    fn hook_for(
        &self,
        block: usize,
        placements: &[(Projection, usize)],
    ) -> Result<Option<FactHook>> {
        self.check_block(block)?;
        let adapted: Vec<_> = placements
            .iter()
            .copied()
            .filter(|(p, _)| self.cfg.adapts(*p))
            .collect();
        if adapted.is_empty() {
            return Ok(None);
        }
        self.hook(block, &adapted).map(Some)
    }

    /// The hook for block `block`'s fused qkv projection (C → 3C, columns `[q | k | v]`), or
    /// `None` when none of q, k, v is adapted.
    pub fn qkv(&self, block: usize) -> Result<Option<FactHook>> {
        let c = self.dim();
        self.hook_for(
            block,
            &[
                (Projection::Q, 0),
                (Projection::K, c),
                (Projection::V, 2 * c),
            ],
        )
    }

    /// The hook for the attention output projection (C → C), if adapted.
    pub fn proj(&self, block: usize) -> Result<Option<FactHook>> {
        self.hook_for(block, &[(Projection::Proj, 0)])
    }

    /// The hook for the first MLP layer (C → m·C), if adapted.
    pub fn fc1(&self, block: usize) -> Result<Option<FactHook>> {
        self.hook_for(block, &[(Projection::Fc1, 0)])
    }

    /// The hook for the second MLP layer (m·C → C), if adapted.
    pub fn fc2(&self, block: usize) -> Result<Option<FactHook>> {
        self.hook_for(block, &[(Projection::Fc2, 0)])
    }
}
