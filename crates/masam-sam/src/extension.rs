//! Per-block extension points of the image encoder.
//!
//! A [`Block`](crate::Block) runs, in order:
//!
//! ```text
//! x = pre_attn(x)                              TokenHook   (MA-SAM: x + Adapter3d(x))
//! y = norm1(x); window partition
//! qkv = qkv_hook(y, W_qkv·y + b)               LinearHook  (MA-SAM: FacT on q and v columns)
//! attention ... ; o = proj_hook(a, W_o·a + b)   LinearHook
//! x = x + unpartition(o)
//! x = post_attn(x)                             TokenHook   (MA-SAM: x + Adapter3d_2(x))
//! h = mlp_fc1_hook(n, W1·n + b1), n = norm2(x) LinearHook
//! x = x + mlp_fc2_hook(g, W2·g + b2), g = GELU(h)
//! ```
//!
//! Hooks live in crates that know nothing of SAM (FacT, the 3D adapter); small newtypes in the
//! crate that composes them implement these traits.

use std::fmt::Debug;
use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

/// What a hook knows about the call it is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockContext {
    /// Index of the block in the encoder (0-based).
    pub block: usize,
    /// Number of adjacent slices D per volume: the batch is (B·D) images, each volume's slices
    /// consecutive. 1 for plain 2D use.
    pub slices: usize,
    /// Training mode (dropout active).
    pub train: bool,
    /// Mixed precision: the dtype the block's layers compute in while the residual stream
    /// stays in the dtype of the tokens ([`ForwardContext::compute`]). `None`: the tokens' dtype.
    pub compute: Option<DType>,
}

impl BlockContext {
    /// The dtype layers compute in for tokens `x` (`compute`, or `x`'s own dtype).
    pub fn compute_dtype(&self, x: &Tensor) -> DType {
        self.compute.unwrap_or(x.dtype())
    }
}

/// Per-call settings of an encoder forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardContext {
    /// Number of adjacent slices D per volume (see [`BlockContext::slices`]).
    pub slices: usize,
    /// Training mode.
    pub train: bool,
    /// Mixed precision, as PyTorch's autocast does it: `Some(BF16)` (or `F16`) runs the patch
    /// embedding, every block's layers (LayerNorm and softmax keep f32 statistics) and the neck
    /// in that dtype, while the residual stream between and inside the blocks (position
    /// embedding, skip additions, adapter sums) and the returned embeddings stay in the dtype
    /// of the input images (f32). `None`: everything in the input's dtype.
    pub compute: Option<DType>,
}

impl ForwardContext {
    /// Evaluation mode for a batch of independent 2D images.
    pub fn eval_2d() -> Self {
        Self {
            slices: 1,
            train: false,
            compute: None,
        }
    }

    /// The context seen by block `block`.
    pub fn block(&self, block: usize) -> BlockContext {
        BlockContext {
            block,
            slices: self.slices,
            train: self.train,
            compute: self.compute,
        }
    }
}

/// A hook on the token map: `(B·D, H, W, C) → (B·D, H, W, C)`. It returns the new tokens, so a
/// residual hook adds its input itself.
pub trait TokenHook: Send + Sync + Debug {
    /// Transforms the tokens.
    fn forward(&self, x: &Tensor, ctx: &BlockContext) -> Result<Tensor>;
}

/// A hook around a frozen linear projection: given the projection's input `x` (…, in) and its
/// frozen output `y = W·x + b` (…, out), returns the output to use (…, out), for example
/// `y + s·Δ(x)` added to some column ranges.
///
/// A hook must act token by token: the leading dimensions are any batch of tokens. In a
/// windowed block whose grid needs padding, the qkv hook sees the real tokens in grid layout
/// `(B·D, H, W, C)` and then once more a single zero token `(1, 1, 1, C)` that stands for every
/// padded position ([`crate::attention::Attention::forward_windowed`]).
pub trait LinearHook: Send + Sync + Debug {
    /// Adjusts the projection output.
    fn forward(&self, x: &Tensor, y: &Tensor, ctx: &BlockContext) -> Result<Tensor>;
}

/// The hooks of one block; every field is optional and `Default` is a plain SAM block.
#[derive(Debug, Clone, Default)]
pub struct BlockHooks {
    /// Before attention, on the block input.
    pub pre_attn: Option<Arc<dyn TokenHook>>,
    /// Around the fused qkv projection (output columns `[q | k | v]`, each C wide).
    pub qkv: Option<Arc<dyn LinearHook>>,
    /// Around the attention output projection.
    pub proj: Option<Arc<dyn LinearHook>>,
    /// After the attention residual, before the MLP.
    pub post_attn: Option<Arc<dyn TokenHook>>,
    /// Around the first MLP layer.
    pub mlp_fc1: Option<Arc<dyn LinearHook>>,
    /// Around the second MLP layer.
    pub mlp_fc2: Option<Arc<dyn LinearHook>>,
}

impl BlockHooks {
    /// True when no hook is set.
    pub fn is_empty(&self) -> bool {
        self.pre_attn.is_none()
            && self.qkv.is_none()
            && self.proj.is_none()
            && self.post_attn.is_none()
            && self.mlp_fc1.is_none()
            && self.mlp_fc2.is_none()
    }
}
