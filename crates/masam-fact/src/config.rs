//! FacT hyper-parameters: which factorisation, rank, scale, dropout and adapted projections.

use serde::{Deserialize, Serialize};

use crate::error::{FactError, Result};
use crate::projection::Projection;

/// Which tensor factorisation of the stacked weight increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    /// Tensor-train: shared U (C→r), V (r→C) and one r×r core per adapted projection and block
    /// (r×m·r for fc1 / fc2). This is what MA-SAM uses.
    Tt,
    /// Tucker: shared U, V, one r×r×r core tensor `FacTc` and mixing vectors `FacTp` (r × n),
    /// one column per adapted projection and block (m columns for fc1 / fc2).
    Tk,
}

/// FacT configuration. `Default` is MA-SAM's: FacT-TT, rank 32, scale 1, dropout 0.1, on q
/// and v only.
///
/// ```
/// use masam_fact::{FactConfig, FactKind, Projection};
/// let cfg = FactConfig::default().with_rank(16);
/// assert_eq!((cfg.kind, cfg.rank, cfg.scale), (FactKind::Tt, 16, 1.0));
/// assert_eq!(cfg.targets, vec![Projection::Q, Projection::V]);
/// assert!(FactConfig::default().with_rank(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FactConfig {
    /// TT or TK factorisation.
    pub kind: FactKind,
    /// Rank r of the shared factors.
    pub rank: usize,
    /// Scale s multiplying every increment.
    pub scale: f64,
    /// Dropout probability on the rank-space activations (training only).
    pub dropout: f32,
    /// Adapted projections (sorted, no duplicates after [`FactConfig::validate`]).
    pub targets: Vec<Projection>,
    /// MLP hidden width / C (4 in ViTs); only used when fc1 or fc2 is adapted.
    pub mlp_ratio: usize,
}

impl Default for FactConfig {
    fn default() -> Self {
        Self::ma_sam()
    }
}

impl FactConfig {
    /// MA-SAM: FacT-TT, rank 32, scale 1.0, dropout 0.1, q and v of the fused qkv.
    pub fn ma_sam() -> Self {
        Self {
            kind: FactKind::Tt,
            rank: 32,
            scale: 1.0,
            dropout: 0.1,
            targets: vec![Projection::Q, Projection::V],
            mlp_ratio: 4,
        }
    }

    /// The reference-tiny fixture: MA-SAM with rank 4.
    pub fn tiny() -> Self {
        Self::ma_sam().with_rank(4)
    }

    /// PETL-ViT's FacT-TT (CIFAR config): rank 8, scale 1, every projection.
    pub fn petl_vit_tt() -> Self {
        Self {
            kind: FactKind::Tt,
            rank: 8,
            scale: 1.0,
            dropout: 0.1,
            targets: Projection::ALL.to_vec(),
            mlp_ratio: 4,
        }
    }

    /// PETL-ViT's FacT-TK (CIFAR config): rank 32, scale 0.1, every projection.
    pub fn petl_vit_tk() -> Self {
        Self {
            kind: FactKind::Tk,
            rank: 32,
            scale: 0.1,
            dropout: 0.1,
            targets: Projection::ALL.to_vec(),
            mlp_ratio: 4,
        }
    }

    /// Sets the factorisation.
    pub fn with_kind(mut self, kind: FactKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the rank.
    pub fn with_rank(mut self, rank: usize) -> Self {
        self.rank = rank;
        self
    }

    /// Sets the scale s.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets the adapted projections.
    pub fn with_targets(mut self, targets: impl Into<Vec<Projection>>) -> Self {
        self.targets = targets.into();
        self
    }

    /// Sets the MLP ratio.
    pub fn with_mlp_ratio(mut self, mlp_ratio: usize) -> Self {
        self.mlp_ratio = mlp_ratio;
        self
    }

    /// True when `p` is adapted.
    pub fn adapts(&self, p: Projection) -> bool {
        self.targets.contains(&p)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(FactError::InvalidConfig("rank must be at least 1".into()));
        }
        if !self.scale.is_finite() {
            return Err(FactError::InvalidConfig(format!(
                "scale must be finite, got {}",
                self.scale
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(FactError::InvalidConfig(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(FactError::InvalidConfig(
                "at least one projection must be adapted".into(),
            ));
        }
        let mut sorted = self.targets.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.targets.len() {
            return Err(FactError::InvalidConfig(format!(
                "duplicate projections in targets {:?}",
                self.targets
            )));
        }
        if self.mlp_ratio == 0 {
            return Err(FactError::InvalidConfig(
                "mlp_ratio must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Adapted projections in block order.
    pub fn sorted_targets(&self) -> Vec<Projection> {
        Projection::ALL
            .into_iter()
            .filter(|p| self.adapts(*p))
            .collect()
    }

    /// FacT-TK mixing columns used by one block.
    pub fn tk_columns_per_block(&self) -> usize {
        self.sorted_targets()
            .iter()
            .map(|p| p.tk_columns(self.mlp_ratio))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_bad_values_do_not() {
        for cfg in [
            FactConfig::default(),
            FactConfig::tiny(),
            FactConfig::petl_vit_tt(),
            FactConfig::petl_vit_tk(),
        ] {
            cfg.validate().unwrap();
        }
        // PETL-ViT's TK uses 12 columns per block: 144 for ViT-B's 12 blocks.
        assert_eq!(FactConfig::petl_vit_tk().tk_columns_per_block() * 12, 144);
        assert_eq!(FactConfig::ma_sam().tk_columns_per_block(), 2);
        let bad = [
            FactConfig::default().with_rank(0),
            FactConfig::default().with_dropout(1.0),
            FactConfig::default().with_scale(f64::NAN),
            FactConfig::default().with_targets(vec![]),
            FactConfig::default().with_targets(vec![Projection::Q, Projection::Q]),
            FactConfig::default().with_mlp_ratio(0),
        ];
        for cfg in bad {
            assert!(matches!(cfg.validate(), Err(FactError::InvalidConfig(_))));
        }
    }

    #[test]
    fn serde_round_trip() {
        let cfg = FactConfig::petl_vit_tk().with_targets(vec![Projection::V, Projection::Fc2]);
        let s = serde_json::to_string(&cfg).unwrap();
        assert!(s.contains("\"fc2\"") && s.contains("\"tk\""), "{s}");
        let back: FactConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, cfg);
        // Missing fields take MA-SAM's defaults.
        let partial: FactConfig = serde_json::from_str("{\"rank\": 8}").unwrap();
        assert_eq!(partial, FactConfig::ma_sam().with_rank(8));
    }
}
