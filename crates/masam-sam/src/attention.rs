//! Multi-head self-attention of SAM's image encoder, with decomposed relative positions.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use masam_nn::{linear, linear_no_bias, softmax_last_dim, softmax_with_grid_bias, Linear};

use crate::extension::{BlockContext, LinearHook};
use crate::rel_pos::decomposed_rel_pos_terms;

/// SAM's encoder `Attention`: fused `qkv` projection (output columns `[q | k | v]`, each
/// `[head₀ … head_{n−1}] × hd`), `attn = (q·hd^−½) @ kᵀ + rel_h + rel_w` (relative terms from the
/// **unscaled** q), softmax over keys, `attn @ v`, heads merged, `proj`.
///
/// Weights: `qkv.weight` (3C, C), `qkv.bias` (3C,), `proj.weight` (C, C), `proj.bias` (C,), and
/// with relative positions `rel_pos_h` (2·h−1, hd), `rel_pos_w` (2·w−1, hd), where (h, w) is the
/// token grid the block was made for (the window, or the whole grid for global blocks). Tables
/// of another length are resized linearly at run time.
///
/// # Shapes
/// - `x`: (B, H, W, C) (for windowed blocks B counts windows)
/// - returns: (B, H, W, C)
#[derive(Debug, Clone)]
pub struct Attention {
    /// Fused q/k/v projection, C → 3C.
    pub qkv: Linear,
    /// Output projection, C → C.
    pub proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// Head width hd = C / heads.
    pub head_dim: usize,
    /// `hd^−½`, applied to q before `q @ kᵀ`.
    pub scale: f64,
    /// Relative-position table along H, (2·h−1, hd), when relative positions are used.
    pub rel_pos_h: Option<Tensor>,
    /// Relative-position table along W, (2·w−1, hd), when relative positions are used.
    pub rel_pos_w: Option<Tensor>,
}

impl Attention {
    /// Builds the attention from `vb` (names `qkv.*`, `proj.*`, `rel_pos_h`, `rel_pos_w`).
    /// `input_size` is the token grid (h, w) the relative-position tables are made for; the
    /// tables are zero-initialised when fresh, as in SAM.
    pub fn new(
        dim: usize,
        num_heads: usize,
        qkv_bias: bool,
        use_rel_pos: bool,
        input_size: (usize, usize),
        vb: VarBuilder,
    ) -> Result<Self> {
        if num_heads == 0 || !dim.is_multiple_of(num_heads) {
            candle_core::bail!("Attention: dim {dim} is not divisible by {num_heads} heads");
        }
        let head_dim = dim / num_heads;
        let qkv = if qkv_bias {
            linear(dim, 3 * dim, vb.pp("qkv"))?
        } else {
            linear_no_bias(dim, 3 * dim, vb.pp("qkv"))?
        };
        let proj = linear(dim, dim, vb.pp("proj"))?;
        let (rel_pos_h, rel_pos_w) = if use_rel_pos {
            let (h, w) = input_size;
            if h == 0 || w == 0 {
                candle_core::bail!("Attention: relative positions need a non-empty input size");
            }
            (
                Some(vb.get_with_hints((2 * h - 1, head_dim), "rel_pos_h", Init::Const(0.0))?),
                Some(vb.get_with_hints((2 * w - 1, head_dim), "rel_pos_w", Init::Const(0.0))?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            qkv,
            proj,
            num_heads,
            head_dim,
            scale: (head_dim as f64).powf(-0.5),
            rel_pos_h,
            rel_pos_w,
        })
    }

    /// Plain forward pass (no hooks).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ctx = BlockContext {
            block: 0,
            slices: 1,
            train: false,
        };
        self.forward_with_hooks(x, None, None, &ctx)
    }

    /// Forward pass with optional hooks around the qkv and output projections. The qkv hook
    /// receives the (windowed, normalised) tokens and the frozen `W_qkv·x + b`; the proj hook
    /// the merged heads and `W_o·a + b`.
    pub fn forward_with_hooks(
        &self,
        x: &Tensor,
        qkv_hook: Option<&dyn LinearHook>,
        proj_hook: Option<&dyn LinearHook>,
        ctx: &BlockContext,
    ) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let (nh, hd) = (self.num_heads, self.head_dim);
        if c != nh * hd {
            candle_core::bail!(
                "Attention: input has {c} channels, expected {} ({nh} heads × {hd})",
                nh * hd
            );
        }
        let l = h * w;
        let qkv = self.qkv.forward(x)?;
        let qkv = match qkv_hook {
            Some(hook) => hook.forward(x, &qkv, ctx)?,
            None => qkv,
        };
        // (B, L, 3, nh, hd) → (3, B·nh, L, hd)
        let qkv = qkv
            .reshape((b, l, 3, nh, hd))?
            .permute([2, 0, 3, 1, 4])?
            .contiguous()?
            .reshape((3, b * nh, l, hd))?;
        let q = qkv.get(0)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let attn = (&q * self.scale)?.matmul(&k.t()?)?;
        let attn = match (&self.rel_pos_h, &self.rel_pos_w) {
            (Some(rh), Some(rw)) => {
                let (bh, bw) = decomposed_rel_pos_terms(&q, rh, rw, (h, w), (h, w))?;
                softmax_with_grid_bias(&attn, &bh, &bw)?
            }
            _ => softmax_last_dim(&attn)?,
        };
        let o = attn
            .matmul(&v)? // (B·nh, L, hd)
            .reshape((b, nh, h, w, hd))?
            .permute([0, 2, 3, 1, 4])?
            .reshape((b, h, w, c))?;
        let y = self.proj.forward(&o)?;
        match proj_hook {
            Some(hook) => hook.forward(&o, &y, ctx),
            None => Ok(y),
        }
    }
}
