//! Segment Anything (SAM) in candle, trainable and extensible.
//!
//! Every op on the training path records a backward (no fused no-grad LayerNorm/softmax), GELU is
//! the exact erf form, and weight names are the official PyTorch ones, so official checkpoints
//! load unchanged. Each encoder block has typed extension points ([`extension`]) where FacT and
//! the 3D adapters plug in.

pub mod error;
pub mod extension;
pub mod mask_decoder;
pub mod position_embedding;
pub mod prompt_encoder;
pub mod transformer;

pub use error::{Error, Result};
pub use extension::{BlockContext, BlockHooks, ForwardContext, LinearHook, TokenHook};
pub use mask_decoder::{MaskDecoder, MaskDecoderConfig, MaskSelection};
pub use position_embedding::PositionEmbeddingRandom;
pub use prompt_encoder::{PromptEncoder, PromptEncoderConfig};
pub use transformer::{TwoWayAttentionBlock, TwoWayTransformer, TwoWayTransformerConfig};
