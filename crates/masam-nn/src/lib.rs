//! Training-safe building blocks for candle models.
//!
//! candle 0.11's fused `LayerNorm`, `softmax_last_dim` and friends record no backward op, so
//! gradients silently stop at them (see `docs/architecture.md`). Every layer here records a
//! backward, and follows PyTorch's semantics and default initialisation, so that models built on
//! them can be trained and compared with PyTorch references. On CPU `f32` tensors the norms and
//! the softmax run fused custom ops with analytic backward passes ([`ops`]); on other devices
//! and dtypes they run compositions of ordinary candle ops ([`ops::composite`]).
//!
//! Mixed precision: every layer computes in the dtype of its input and converts its parameters
//! to it at use, so a model whose trainable parameters are f32 `Var`s runs a bf16 or f16
//! forward pass unchanged when given bf16 or f16 input; LayerNorm and softmax compute their
//! statistics in f32 ([`ops::stat_dtype`]).
//!
//! - [`LayerNorm`] over the last dimension, [`LayerNorm2d`] over the channels of NCHW;
//! - [`softmax_last_dim`], max-subtracted, with a backward; [`gelu_erf`], exact GELU;
//! - [`Linear`] with PyTorch's default `U(±1/√fan_in)` initialisation;
//! - [`SeededVarMap`]: a `VarMap` whose fresh variables come from a seeded RNG, so that
//!   initialisation is reproducible (candle's CPU RNG cannot be seeded).
//!
//! ```
//! use candle_core::{Device, Tensor, DType};
//! use masam_nn::{layer_norm, SeededVarMap};
//! # fn main() -> candle_core::Result<()> {
//! let params = SeededVarMap::new(0);
//! let vb = params.var_builder(DType::F32, &Device::Cpu);
//! let ln = layer_norm(4, 1e-6, vb.pp("norm"))?;
//! let x = Tensor::new(&[[1f32, 2., 3., 4.]], &Device::Cpu)?;
//! let y = ln.forward(&x)?;
//! let mean: f32 = y.mean_all()?.to_scalar()?;
//! assert!(mean.abs() < 1e-6);
//! # Ok(()) }
//! ```

pub mod error;
pub mod frozen_linear;
pub mod gelu;
pub mod gemm;
pub mod init;
pub mod layer_norm;
pub mod layer_norm_2d;
pub mod linear;
pub mod ops;
pub mod runtime;
pub mod softmax;

pub use frozen_linear::FrozenLinear;
pub use gelu::gelu_erf;
pub use init::{NormalInitError, SeededVarMap};
pub use layer_norm::{layer_norm, LayerNorm};
pub use layer_norm_2d::{layer_norm_2d, LayerNorm2d};
pub use linear::{add_bias, linear, linear_no_bias, Linear};
pub use softmax::{softmax_last_dim, softmax_with_grid_bias};
