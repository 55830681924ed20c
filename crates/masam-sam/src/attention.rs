//! Multi-head self-attention of SAM's image encoder, with decomposed relative positions.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use masam_nn::{linear, linear_no_bias, softmax_last_dim, softmax_with_grid_bias, Linear};

use crate::extension::{BlockContext, LinearHook};
use crate::rel_pos::{decomposed_rel_pos_terms, get_rel_pos, rel_pos_terms};
use crate::window::window_bands;

/// The most attention logits [`Attention::forward_windowed`] holds at once (32 Mi floats,
/// 128 MiB in f32): beyond that the (windows × heads) batch is processed in chunks, so that the
/// global blocks' (heads, L, L) matrices of a large batch of slices are not all alive together.
pub const ATTENTION_CHUNK_FLOATS: usize = 1 << 25;

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
            compute: None,
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

    /// Applies the qkv projection and its hook to tokens (…, C).
    fn project_qkv(
        &self,
        x: &Tensor,
        hook: Option<&dyn LinearHook>,
        ctx: &BlockContext,
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        match hook {
            Some(hook) => hook.forward(x, &qkv, ctx),
            None => Ok(qkv),
        }
    }

    /// The fused CPU kernel ([`crate::attention_kernel`]) when it applies: CPU `f32` qkv, padding
    /// projection and relative-position tables. It records its own backward pass (for qkv, the
    /// padding projection and the tables), so it serves training and prediction alike. Returns
    /// the attention output (B, H, W, C) before the output projection, or `None` to run the
    /// candle composition.
    fn fused(&self, qkv: &Tensor, pad: Option<&Tensor>, window: usize) -> Result<Option<Tensor>> {
        let tables = [self.rel_pos_h.as_ref(), self.rel_pos_w.as_ref()];
        let fits = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
        if !fits(qkv) || !pad.is_none_or(fits) || !tables.iter().flatten().all(|t| fits(t)) {
            return Ok(None);
        }
        let (_, h, w, _) = qkv.dims4()?;
        let (wh, ww) = if window == 0 {
            (h, w)
        } else {
            (window, window)
        };
        let placeholder = || Tensor::zeros(1, candle_core::DType::F32, qkv.device());
        let rel = match (&self.rel_pos_h, &self.rel_pos_w) {
            (Some(th), Some(tw)) => Some(Tensor::cat(
                &[
                    get_rel_pos(wh, wh, th)?.flatten_all()?,
                    get_rel_pos(ww, ww, tw)?.flatten_all()?,
                ],
                0,
            )?),
            _ => None,
        };
        let op = crate::attention_kernel::WindowAttentionOp {
            heads: self.num_heads,
            head_dim: self.head_dim,
            window,
            scale: self.scale as f32,
            has_pad: pad.is_some(),
            has_rel: rel.is_some(),
        };
        let pad = match pad {
            Some(p) => p.flatten_all()?,
            None => placeholder()?,
        };
        let rel = match rel {
            Some(r) => r,
            None => placeholder()?,
        };
        Ok(Some(qkv.contiguous()?.apply_op3(&pad, &rel, op)?))
    }

    /// SAM's windowed attention over a whole token map, computing the real tokens only.
    ///
    /// Equals zero-padding `x` to a multiple of `window`, cutting it into windows
    /// ([`crate::window::window_partition`]), running [`Attention::forward_with_hooks`] on every
    /// window and cropping the reassembled map ([`crate::window::window_unpartition`]), up to
    /// float rounding, without the padding's cost: a padded token is zero, so its q/k/v are the
    /// projection (and hook) of one zero token, computed once; queries and the output
    /// projection run on the real tokens only. Windows are batched into one attention product
    /// per band of equal real extent (whole windows, the partial last column, the partial last
    /// row, the corner), each query attending to its whole window, padding included, as in SAM.
    /// At 512 px (32 × 32 tokens, windows of 14) the padded path computes 1764 tokens per image
    /// for 1024 real ones.
    ///
    /// `window == 0` is global attention over the whole map (the same as
    /// [`Attention::forward_with_hooks`] on `x`). The attention products run on chunks of at
    /// most [`ATTENTION_CHUNK_FLOATS`] logits.
    ///
    /// # Shapes
    /// - `x`: (B, H, W, C) normalised tokens; returns (B, H, W, C)
    pub fn forward_windowed(
        &self,
        x: &Tensor,
        window: usize,
        qkv_hook: Option<&dyn LinearHook>,
        proj_hook: Option<&dyn LinearHook>,
        ctx: &BlockContext,
    ) -> Result<Tensor> {
        let hooks = (qkv_hook, proj_hook);
        self.forward_windowed_chunked(x, window, hooks, ctx, ATTENTION_CHUNK_FLOATS)
    }

    /// [`Attention::forward_windowed`] with at most `chunk_floats` attention logits alive at
    /// once (at least one window·head at a time, whatever its size); `hooks` are the qkv and
    /// proj hooks. The chunking changes memory, not results.
    ///
    /// # Shapes
    /// - `x`: (B, H, W, C) normalised tokens; returns (B, H, W, C)
    pub fn forward_windowed_chunked(
        &self,
        x: &Tensor,
        window: usize,
        hooks: (Option<&dyn LinearHook>, Option<&dyn LinearHook>),
        ctx: &BlockContext,
        chunk_floats: usize,
    ) -> Result<Tensor> {
        let (qkv_hook, proj_hook) = hooks;
        let (b, h, w, c) = x.dims4()?;
        let (nh, hd) = (self.num_heads, self.head_dim);
        if c != nh * hd || h == 0 || w == 0 {
            candle_core::bail!(
                "Attention: input {:?} is not a non-empty map of {} channels ({nh} heads × {hd})",
                x.dims(),
                nh * hd
            );
        }
        let (wh, ww) = if window == 0 {
            (h, w)
        } else {
            (window, window)
        };
        let (n_h, n_w) = (h.div_ceil(wh), w.div_ceil(ww));
        let (hp, wp) = (n_h * wh, n_w * ww);
        let mut qkv = self.project_qkv(x, qkv_hook, ctx)?; // (B, H, W, 3C)
                                                           // every padded token is zero after the norm: one projection serves them all
        let pad = if (hp, wp) != (h, w) {
            let zero = Tensor::zeros((1, 1, 1, c), x.dtype(), x.device())?;
            Some(self.project_qkv(&zero, qkv_hook, ctx)?)
        } else {
            None
        };
        if let Some(o) = self.fused(&qkv, pad.as_ref(), window)? {
            let y = self.proj.forward(&o)?;
            return match proj_hook {
                Some(hook) => hook.forward(&o, &y, ctx),
                None => Ok(y),
            };
        }
        if let Some(pad) = pad {
            if wp > w {
                let right = pad.broadcast_as((b, h, wp - w, 3 * c))?.contiguous()?;
                qkv = Tensor::cat(&[&qkv, &right], 2)?;
            }
            if hp > h {
                let bottom = pad.broadcast_as((b, hp - h, wp, 3 * c))?.contiguous()?;
                qkv = Tensor::cat(&[&qkv, &bottom], 1)?;
            }
        }
        // (B, nH, wh, nW, ww, 3, nh, hd) → (3, B, nH, nW, nh, wh, ww, hd)
        let parts = qkv
            .reshape(vec![b, n_h, wh, n_w, ww, 3, nh, hd])?
            .permute(vec![5, 0, 1, 3, 6, 2, 4, 7])?
            .contiguous()?;
        drop(qkv);
        let (q_all, k_all, v_all) = (parts.get(0)?, parts.get(1)?, parts.get(2)?);
        let rel = match (&self.rel_pos_h, &self.rel_pos_w) {
            (Some(th), Some(tw)) => {
                // in the activations' dtype (mixed precision: f32 tables are converted at use)
                let (th, tw) = (th.to_dtype(x.dtype())?, tw.to_dtype(x.dtype())?);
                Some((get_rel_pos(wh, wh, &th)?, get_rel_pos(ww, ww, &tw)?))
            }
            _ => None,
        };
        let keys = wh * ww;
        let mut rows = Vec::with_capacity(2);
        for rb in window_bands(h, wh) {
            let mut cols = Vec::with_capacity(2);
            for cb in window_bands(w, ww) {
                let band = |t: &Tensor| -> Result<Tensor> {
                    t.narrow(1, rb.first, rb.count)?
                        .narrow(2, cb.first, cb.count)
                };
                let n = b * rb.count * cb.count * nh;
                let (qh, qw) = (rb.real, cb.real);
                let q = band(&q_all)?
                    .narrow(4, 0, qh)?
                    .narrow(5, 0, qw)?
                    .contiguous()?
                    .reshape((n, qh * qw, hd))?;
                let k = band(&k_all)?.contiguous()?.reshape((n, keys, hd))?;
                let v = band(&v_all)?.contiguous()?.reshape((n, keys, hd))?;
                let rel_q = match &rel {
                    Some((rh, rw)) => Some((rh.narrow(0, 0, qh)?, rw.narrow(0, 0, qw)?)),
                    None => None,
                };
                // bounded attention matrices: at most `chunk_floats` logits at a time
                let per = (chunk_floats / (qh * qw * keys).max(1)).clamp(1, n);
                let mut outs = Vec::with_capacity(n.div_ceil(per));
                for s0 in (0..n).step_by(per) {
                    let len = per.min(n - s0);
                    let (q, k, v) = (
                        q.narrow(0, s0, len)?,
                        k.narrow(0, s0, len)?,
                        v.narrow(0, s0, len)?,
                    );
                    let attn = (&q * self.scale)?.matmul(&k.t()?)?; // (len, qh·qw, keys)
                    let attn = match &rel_q {
                        Some((rh, rw)) => {
                            let (bh, bw) = rel_pos_terms(&q, rh, rw)?;
                            softmax_with_grid_bias(&attn, &bh, &bw)?
                        }
                        None => softmax_last_dim(&attn)?,
                    };
                    outs.push(attn.matmul(&v)?); // (len, qh·qw, hd)
                }
                let o = Tensor::cat(&outs, 0)?
                    .reshape(vec![b, rb.count, cb.count, nh, qh, qw, hd])?
                    .permute(vec![0, 1, 4, 2, 5, 3, 6])?
                    .contiguous()?
                    .reshape((b, rb.count * qh, cb.count * qw, c))?;
                cols.push(o);
            }
            rows.push(Tensor::cat(&cols, 2)?);
        }
        drop(parts);
        let o = Tensor::cat(&rows, 1)?;
        let y = self.proj.forward(&o)?;
        match proj_hook {
            Some(hook) => hook.forward(&o, &y, ctx),
            None => Ok(y),
        }
    }
}
