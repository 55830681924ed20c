//! Conv3D for candle, with forward and backward on CPU (and CUDA behind the `cuda` feature), and
//! MA-SAM's 3D adapter layer.
//!
//! - [`conv3d_op`]: the differentiable stride-1 Conv3D (a candle custom op with an explicit
//!   backward for input, weight and bias), padding [`Conv3dPadding::Same`] (PyTorch's rule,
//!   extra padding at the end for even kernels) or explicit symmetric padding;
//! - [`conv3d_depth_channels_last`]: the same for depth-only `(kd, 1, 1)` kernels on
//!   channels-last activations (N, D, H, W, C), without permutes (the adapter's layout);
//! - [`Conv3d`] / [`conv3d()`]: the layer and its `VarBuilder` builder (PyTorch default init);
//! - [`Adapter3d`] / [`adapter3d`]: `x + up(act(conv3d(down(norm(x)))))` over the slices of
//!   each volume;
//! - [`reference::conv3d_reference`]: a plain-ops oracle (conv2d over depth taps).
//!
//! CPU kernels are f32: for depth-only `(kd, 1, 1)` kernels a [Winograd](winograd) path (fewer
//! GEMMs, chosen automatically where it is accurate and faster) and an exact shifted-GEMM path,
//! and a chunked vol2col + GEMM general path, all on the `gemm` crate and rayon. CUDA kernels
//! (f32/f16/bf16) are compiled at run time with NVRTC.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use masam_conv3d::{conv3d, Conv3dConfig};
//! use masam_nn::SeededVarMap;
//! # fn main() -> masam_conv3d::Result<()> {
//! let params = SeededVarMap::new(0);
//! let conv = conv3d(4, 4, [3, 1, 1], Conv3dConfig::default(), params.var_builder(DType::F32, &Device::Cpu))?;
//! let x = Var::randn(0f32, 1., (1, 4, 5, 2, 2), &Device::Cpu)?;
//! let y = conv.forward(x.as_tensor())?;
//! let grads = y.sqr()?.sum_all()?.backward()?;
//! assert!(grads.get(conv.weight()).is_some() && grads.get(x.as_tensor()).is_some());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod adapter;
pub mod channels_last;
pub mod conv3d;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod geometry;
pub mod op;
pub mod reference;
mod taps;
pub mod winograd;

pub use adapter::{adapter3d, Adapter3d, Adapter3dConfig, AdapterActivation, AdapterNames};
pub use channels_last::conv3d_depth_channels_last;
pub use conv3d::{conv3d, Conv3d, Conv3dConfig};
pub use error::{Conv3dError, Result};
pub use geometry::{Conv3dGeometry, Conv3dKernel, Conv3dPadding};
pub use op::{conv3d_op, conv3d_op_with, Conv3dInputGradOp, Conv3dOp, Conv3dWeightGradOp};
