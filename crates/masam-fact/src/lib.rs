//! FacT: tensor-factorised weight increments for parameter-efficient fine-tuning of ViTs.
//!
//! FacT (Jie & Deng, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer",
//! AAAI 2023; code: PETL-ViT `FacT/`) stacks the weight increments ΔW of every adapted
//! projection of every block into one tensor and factorises it. Each increment becomes
//! `ΔW = V · S · U` with factors U (C → r) and V (r → C) shared by the whole model and a small
//! core `S` per projection:
//!
//! - **FacT-TT** ([`FactKind::Tt`]): one r×r core per adapted projection and block. MA-SAM uses
//!   this on q and v of SAM's fused qkv, rank 32, scale 1, dropout 0.1
//!   ([`FactConfig::ma_sam`], the default).
//! - **FacT-TK** ([`FactKind::Tk`]): one shared r×r×r core tensor, mixed per projection by a
//!   column of a mixing matrix.
//!
//! A layer's output becomes `y = x·Wᵀ + b + s·V·dropout(S·U·x)` (the increment in the column
//! range of the adapted projection, e.g. `[0:C]` for q and `[2C:3C]` for v of a fused qkv).
//! The frozen `W`, `b` are plain tensors wrapped in [`masam_nn::FrozenLinear`], whose backward
//! computes no weight gradient; U, V and the cores are `Var`s created through a `VarBuilder`.
//!
//! The crate knows nothing of SAM: [`Fact`] holds the parameters of a whole model and hands out
//! one [`FactHook`] per (block, layer). A hook maps `(x, y = frozen output)` to
//! `y + s·Δ(x)`, exactly the shape of a "linear hook" in a model with extension points;
//! [`FactLinear`] wraps a frozen layer with its hook for models without them, and can
//! [`merge`](FactLinear::merge) the increment into the weight for zero-overhead inference.
//! [`Fact::save_reference`] / [`Fact::load_reference_file`] use MA-SAM's checkpoint keys
//! (`q_FacTs_###`, `image_encoder.FacTu.weight`, …; see [`ReferenceFormat`]).
//!
//! # Models you did not write
//!
//! Three pieces cover models whose layers are private (every ViT of candle-transformers):
//!
//! - [`backend::FactBackend`], a `VarBuilder` backend that serves the base checkpoint with
//!   `W + s·ΔW` in the weights a [`backend::ProjectionMap`] selects (ready-made maps for Hugging
//!   Face ViT, DINOv2/timm and CLIP names), trainable or merged for inference;
//! - [`gradcheck`], which compares autograd with finite differences on a few entries of each
//!   factor and says whether a gradient is missing, wrong or right. Run it on any new host
//!   model: candle 0.11's `softmax_last_dim` and fused LayerNorm record no backward, and none
//!   of the candle-transformers ViTs measured trains FacT correctly (`docs/fact.md`);
//! - [`hosts`], twins of such models with backward-capable ops that load the same tensors:
//!   train there, then serve the merged weights to the stock model.
//!
//! # Example: FacT on the fused qkv of a ViT block, one training step
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{AdamW, Optimizer, ParamsAdamW};
//! use masam_fact::{Fact, FactConfig, FactLinear};
//! use masam_nn::{FrozenLinear, SeededVarMap};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! let (dim, depth) = (16, 2);
//! // Frozen pretrained weights: plain tensors.
//! let qkv_w = Tensor::randn(0f32, 0.2, (3 * dim, dim), &dev)?;
//! let qkv_b = Tensor::zeros(3 * dim, DType::F32, &dev)?;
//! // Trainable FacT parameters: Vars in a seeded VarMap.
//! let params = SeededVarMap::new(0);
//! let cfg = FactConfig::ma_sam().with_rank(4);
//! let fact = Fact::new(&cfg, dim, depth, params.var_builder(DType::F32, &dev))?;
//! let qkv = FactLinear::new(FrozenLinear::new(qkv_w, Some(qkv_b)), fact.qkv(0)?.unwrap())?;
//!
//! let x = Tensor::randn(0f32, 1., (2, 10, dim), &dev)?; // (batch, tokens, C)
//! let target = Tensor::randn(0f32, 1., (2, 10, 3 * dim), &dev)?;
//! let mut opt = AdamW::new(params.vars().all_vars(), ParamsAdamW::default())?;
//! let loss = (qkv.forward(&x, true)? - &target)?.sqr()?.mean_all()?;
//! opt.backward_step(&loss)?;
//! // After one step V is no longer zero, so the increment is active.
//! let v_norm: f32 = fact.factors().v().abs()?.sum_all()?.to_scalar()?;
//! assert!(v_norm > 0.0);
//! # Ok(()) }
//! ```

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod dropout_rng;
pub mod error;
pub mod fact;
pub mod factors;
pub mod gradcheck;
pub mod hook;
pub mod hosts;
pub mod increment;
pub mod linear;
pub mod projection;
pub mod tk;
pub mod tt;

pub use backend::{merge_tensors, FactBackend, ProjectionMap, ServeMode};
pub use checkpoint::{read_tensors, ReferenceFormat};
pub use config::{FactConfig, FactKind};
pub use dropout_rng::DropoutRng;
pub use error::{FactError, Result};
pub use fact::Fact;
pub use factors::SharedFactors;
pub use gradcheck::{check_factors, check_gradients, GradCheckConfig, GradCheckReport, Verdict};
pub use hook::FactHook;
pub use increment::Increment;
pub use linear::FactLinear;
pub use masam_nn::FrozenLinear;
pub use projection::Projection;
pub use tk::TkCores;
pub use tt::TtCores;
