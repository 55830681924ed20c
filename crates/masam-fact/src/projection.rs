//! The projections of a ViT block that FacT can adapt.

use serde::{Deserialize, Serialize};

/// A linear projection of a ViT block that FacT can adapt.
///
/// With embedding width C and MLP ratio m (4 in ViTs), the projections map
/// q, k, v, proj: C → C (q, k, v are the column ranges `[0:C]`, `[C:2C]`, `[2C:3C]` of a fused
/// qkv projection); fc1: C → m·C; fc2: m·C → C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// Query (columns `[0:C]` of the fused qkv).
    Q,
    /// Key (columns `[C:2C]` of the fused qkv).
    K,
    /// Value (columns `[2C:3C]` of the fused qkv).
    V,
    /// Attention output projection.
    Proj,
    /// First MLP layer, C → m·C.
    Fc1,
    /// Second MLP layer, m·C → C.
    Fc2,
}

impl Projection {
    /// Every projection, in block order (also the order of FacT-TK's mixing columns).
    pub const ALL: [Projection; 6] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::Proj,
        Projection::Fc1,
        Projection::Fc2,
    ];

    /// Short name, as used in parameter keys (`q_FacTs`, `fc1_FacTs`, …).
    pub fn name(self) -> &'static str {
        match self {
            Projection::Q => "q",
            Projection::K => "k",
            Projection::V => "v",
            Projection::Proj => "proj",
            Projection::Fc1 => "fc1",
            Projection::Fc2 => "fc2",
        }
    }

    /// `(m_in, m_out)`: the input is `m_in` chunks of C features and the output `m_out` chunks
    /// of C features: `(1, 1)` for q, k, v and proj, `(1, m)` for fc1, `(m, 1)` for fc2, with
    /// `m = mlp_ratio`.
    pub fn chunks(self, mlp_ratio: usize) -> (usize, usize) {
        match self {
            Projection::Fc1 => (1, mlp_ratio),
            Projection::Fc2 => (mlp_ratio, 1),
            _ => (1, 1),
        }
    }

    /// Number of FacT-TK mixing columns (`FacTp` columns) this projection uses: 1 for the
    /// attention projections, `mlp_ratio` for fc1 and fc2.
    pub fn tk_columns(self, mlp_ratio: usize) -> usize {
        match self {
            Projection::Fc1 | Projection::Fc2 => mlp_ratio,
            _ => 1,
        }
    }

    /// Column offset of this projection inside the fused qkv output of width 3·C
    /// (`None` for proj, fc1, fc2).
    pub fn qkv_offset(self, dim: usize) -> Option<usize> {
        match self {
            Projection::Q => Some(0),
            Projection::K => Some(dim),
            Projection::V => Some(2 * dim),
            _ => None,
        }
    }
}
