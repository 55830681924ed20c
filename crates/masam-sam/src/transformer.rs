//! SAM's two-way transformer (`segment_anything/modeling/transformer.py`): prompt tokens and image
//! tokens attend to each other in turn.
//!
//! ```text
//! per layer l (layer 0 skips the query PE and the self-attention residual):
//!   q = norm1(q + self_attn(q + pe_q, q + pe_q, q))
//!   q = norm2(q + cross_token_to_image(q + pe_q, k + pe_k, k))
//!   q = norm3(q + lin2(ReLU(lin1(q))))
//!   k = norm4(k + cross_image_to_token(k + pe_k, q + pe_q, q))
//! finally: q = norm_final_attn(q + final_attn_token_to_image(q + pe_q, k + pe_k, k))
//! ```
//!
//! `pe_q` is always the original prompt tokens and `pe_k` the dense image PE. Every LayerNorm has
//! eps 1e-5 (PyTorch's default `nn.LayerNorm`), softmax and norms record a backward.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use masam_nn::{layer_norm, linear, softmax_last_dim, LayerNorm, Linear};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Configuration of the [`TwoWayTransformer`]. `Default` is SAM's (depth 2, C 256, 8 heads,
/// MLP 2048, cross-attention downsample 2, LayerNorm eps 1e-5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoWayTransformerConfig {
    /// Number of [`TwoWayAttentionBlock`]s.
    pub depth: usize,
    /// Token width C.
    pub embedding_dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Hidden width of the token MLP.
    pub mlp_dim: usize,
    /// Cross-attentions project to C / rate channels.
    pub attention_downsample_rate: usize,
    /// Epsilon of every LayerNorm of the transformer.
    pub layer_norm_eps: f64,
}

impl Default for TwoWayTransformerConfig {
    fn default() -> Self {
        Self {
            depth: 2,
            embedding_dim: 256,
            num_heads: 8,
            mlp_dim: 2048,
            attention_downsample_rate: 2,
            layer_norm_eps: 1e-5,
        }
    }
}

impl TwoWayTransformerConfig {
    /// The tiny decoder of the reference fixtures: C 64, 4 heads, MLP 128.
    pub fn tiny() -> Self {
        Self {
            embedding_dim: 64,
            num_heads: 4,
            mlp_dim: 128,
            ..Self::default()
        }
    }

    /// Checks that the head split works for every attention.
    pub fn validate(&self) -> crate::Result<()> {
        let c = self.embedding_dim;
        let r = self.attention_downsample_rate;
        if c == 0 || self.num_heads == 0 || r == 0 || self.mlp_dim == 0 {
            return Err(Error::Config(format!(
                "two-way transformer: sizes must be positive, got {self:?}"
            )));
        }
        if !c.is_multiple_of(r)
            || !(c / r).is_multiple_of(self.num_heads)
            || !c.is_multiple_of(self.num_heads)
        {
            return Err(Error::Config(format!(
                "two-way transformer: embedding_dim {c} (and {c}/{r}) must split into {} heads",
                self.num_heads
            )));
        }
        Ok(())
    }
}

/// Multi-head attention with projections to an internal width (SAM's decoder `Attention`):
/// `softmax((q·kᵀ)/√hd)·v`, the scale applied after the matmul.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl Attention {
    /// Builds an attention of width `embedding_dim` with `embedding_dim / downsample_rate`
    /// internal channels (`q_proj`, `k_proj`, `v_proj`, `out_proj`, all with bias).
    pub fn new(
        embedding_dim: usize,
        num_heads: usize,
        downsample_rate: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let internal = embedding_dim / downsample_rate.max(1);
        if num_heads == 0 || !internal.is_multiple_of(num_heads) {
            candle_core::bail!("attention: {num_heads} heads do not divide {internal} channels");
        }
        Ok(Self {
            q_proj: linear(embedding_dim, internal, vb.pp("q_proj"))?,
            k_proj: linear(embedding_dim, internal, vb.pp("k_proj"))?,
            v_proj: linear(embedding_dim, internal, vb.pp("v_proj"))?,
            out_proj: linear(internal, embedding_dim, vb.pp("out_proj"))?,
            num_heads,
        })
    }

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.num_heads, c / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attends from `q` to `k`/`v`. Batch sizes must be equal.
    ///
    /// # Shapes
    /// - `q`: (B, Nq, C); `k`, `v`: (B, Nk, C); returns (B, Nq, C)
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (q, k, v) = (
            self.q_proj.forward(q)?,
            self.k_proj.forward(k)?,
            self.v_proj.forward(v)?,
        );
        if masam_nn::ops::fusable(&[&q, &k, &v]) {
            // one op with its own backward, heads read in place
            let out = masam_nn::ops::attention_fused(&q, &k, &v, self.num_heads)?;
            return self.out_proj.forward(&out);
        }
        let q = self.separate_heads(&q)?;
        let k = self.separate_heads(&k)?;
        let v = self.separate_heads(&v)?;
        let (b, h, n, hd) = q.dims4()?;
        let attn = q.matmul(&k.transpose(2, 3)?.contiguous()?)?;
        let attn = (attn / (hd as f64).sqrt())?;
        let attn = softmax_last_dim(&attn)?;
        let out = attn.matmul(&v)?;
        let out = out.transpose(1, 2)?.reshape((b, n, h * hd))?;
        self.out_proj.forward(&out)
    }
}

/// Token MLP `lin2(ReLU(lin1(x)))`.
#[derive(Debug, Clone)]
struct MlpBlock {
    lin1: Linear,
    lin2: Linear,
}

impl MlpBlock {
    fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            lin1: linear(dim, hidden, vb.pp("lin1"))?,
            lin2: linear(hidden, dim, vb.pp("lin2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.lin2.forward(&self.lin1.forward(x)?.relu()?)
    }
}

/// One layer of the two-way transformer (see the module docs).
#[derive(Debug, Clone)]
pub struct TwoWayAttentionBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_attn_token_to_image: Attention,
    norm2: LayerNorm,
    mlp: MlpBlock,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_attn_image_to_token: Attention,
    skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    /// Builds a layer; `skip_first_layer_pe` is true for layer 0.
    pub fn new(
        cfg: &TwoWayTransformerConfig,
        skip_first_layer_pe: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = cfg.embedding_dim;
        let (h, r, eps) = (
            cfg.num_heads,
            cfg.attention_downsample_rate,
            cfg.layer_norm_eps,
        );
        Ok(Self {
            self_attn: Attention::new(c, h, 1, vb.pp("self_attn"))?,
            norm1: layer_norm(c, eps, vb.pp("norm1"))?,
            cross_attn_token_to_image: Attention::new(c, h, r, vb.pp("cross_attn_token_to_image"))?,
            norm2: layer_norm(c, eps, vb.pp("norm2"))?,
            mlp: MlpBlock::new(c, cfg.mlp_dim, vb.pp("mlp"))?,
            norm3: layer_norm(c, eps, vb.pp("norm3"))?,
            norm4: layer_norm(c, eps, vb.pp("norm4"))?,
            cross_attn_image_to_token: Attention::new(c, h, r, vb.pp("cross_attn_image_to_token"))?,
            skip_first_layer_pe,
        })
    }

    /// Runs the layer.
    ///
    /// # Shapes
    /// - `queries`, `query_pe`: (B, N, C); `keys`, `key_pe`: (B, h·w, C)
    /// - returns the new (queries, keys)
    pub fn forward(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward(queries, queries, queries)?
        } else {
            let q = (queries + query_pe)?;
            (queries + self.self_attn.forward(&q, &q, queries)?)?
        };
        let queries = self.norm1.forward(&queries)?;

        let q = (&queries + query_pe)?;
        let k = (keys + key_pe)?;
        let attn = self.cross_attn_token_to_image.forward(&q, &k, keys)?;
        let queries = self.norm2.forward(&(queries + attn)?)?;

        let mlp = self.mlp.forward(&queries)?;
        let queries = self.norm3.forward(&(queries + mlp)?)?;

        let q = (&queries + query_pe)?;
        let attn = self.cross_attn_image_to_token.forward(&k, &q, &queries)?;
        let keys = self.norm4.forward(&(keys + attn)?)?;
        Ok((queries, keys))
    }
}

/// SAM's two-way transformer: `layers.{l}` then `final_attn_token_to_image` and
/// `norm_final_attn`.
#[derive(Debug, Clone)]
pub struct TwoWayTransformer {
    layers: Vec<TwoWayAttentionBlock>,
    final_attn_token_to_image: Attention,
    norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    /// Builds the transformer from `vb` (the `mask_decoder.transformer` prefix).
    pub fn new(cfg: &TwoWayTransformerConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let layers = (0..cfg.depth)
            .map(|l| TwoWayAttentionBlock::new(cfg, l == 0, vb.pp("layers").pp(l.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let c = cfg.embedding_dim;
        Ok(Self {
            layers,
            final_attn_token_to_image: Attention::new(
                c,
                cfg.num_heads,
                cfg.attention_downsample_rate,
                vb.pp("final_attn_token_to_image"),
            )?,
            norm_final_attn: layer_norm(c, cfg.layer_norm_eps, vb.pp("norm_final_attn"))?,
        })
    }

    /// Runs the transformer. The image PE may have batch 1 (it is broadcast); the image and
    /// point batches must be equal.
    ///
    /// # Shapes
    /// - `image_embedding`: (B, C, h, w); `image_pe`: (1 or B, C, h, w); `point_embedding`: (B, N, C)
    /// - returns `queries` (B, N, C) and `keys` (B, h·w, C)
    pub fn forward(
        &self,
        image_embedding: &Tensor,
        image_pe: &Tensor,
        point_embedding: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, c, h, w) = image_embedding.dims4()?;
        let keys = image_embedding
            .flatten_from(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let key_pe = image_pe
            .flatten_from(2)?
            .transpose(1, 2)?
            .broadcast_as((b, h * w, c))?
            .contiguous()?;
        let mut queries = point_embedding.clone();
        let mut keys = keys;
        for layer in &self.layers {
            let (q, k) = layer.forward(&queries, &keys, point_embedding, &key_pe)?;
            queries = q;
            keys = k;
        }
        let q = (&queries + point_embedding)?;
        let k = (&keys + &key_pe)?;
        let attn = self.final_attn_token_to_image.forward(&q, &k, &keys)?;
        let queries = self.norm_final_attn.forward(&(queries + attn)?)?;
        Ok((queries, keys))
    }
}
