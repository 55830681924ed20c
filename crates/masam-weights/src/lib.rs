//! Readers for weight files that treat every file as hostile: PyTorch's zip-format `.pth`
//! (`torch.save`) and safetensors.
//!
//! * [`read_pth`] runs the pickle through a bounded, iterative interpreter that builds nothing
//!   but plain data and tensor records: nesting depth, work and memory are limited
//!   ([`Limits`]), and the only globals it resolves are PyTorch's tensor-rebuilding functions,
//!   its storage classes and `collections.OrderedDict`. A pickle naming any other global (for
//!   instance `os.system`) is refused, never executed.
//! * [`read_safetensors`] lets the `safetensors` crate validate the header and data layout and
//!   adds limits on the number, rank and dtype of tensors.
//!
//! Both return [`RawTensor`]s (contiguous little-endian bytes; with the `candle` feature,
//! [`RawTensor::to_candle`]). Every refusal is a [`WeightsError`] naming the file; nothing is
//! allocated from a size the file claims before that size has been checked against the file's
//! real length and the limits.
//!
//! ```
//! use masam_weights::{read_safetensors_bytes, Limits};
//! let bytes = b"\x02\x00\x00\x00\x00\x00\x00\x00{}";
//! let tensors = read_safetensors_bytes(bytes, "empty.safetensors".as_ref(), &Limits::default())?;
//! assert!(tensors.is_empty());
//! # Ok::<(), masam_weights::WeightsError>(())
//! ```

mod dtype;
mod error;
mod limits;
mod pickle;
mod pth;
mod raw_tensor;
mod safetensors_file;

pub use dtype::WeightDtype;
pub use error::{Result, WeightsError};
pub use limits::Limits;
pub use pth::{read_pth, read_pth_bytes};
pub use raw_tensor::RawTensor;
pub use safetensors_file::{read_safetensors, read_safetensors_bytes};
