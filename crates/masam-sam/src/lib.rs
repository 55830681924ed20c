//! Segment Anything (SAM) in candle, trainable and extensible.
//!
//! Every op on the training path records a backward (no fused no-grad LayerNorm/softmax), GELU is
//! the exact erf form, and weight names are the official PyTorch ones, so official checkpoints
//! load unchanged. Each encoder block has typed extension points ([`extension`]) where FacT and
//! the 3D adapters plug in.

pub mod attention;
mod attention_kernel;
pub mod block;
pub mod checkpoint;
pub mod config;
pub mod conv_gemm;
mod conv_shift;
mod conv_transpose_kernel;
pub mod convert;
pub mod error;
pub mod extension;
#[cfg(feature = "hub")]
pub mod hub;
pub mod image_encoder;
pub mod mask_decoder;
mod mask_logits_kernel;
pub mod mlp;
pub mod patch_embed;
pub mod pixel_skip;
pub mod position_embedding;
pub mod prompt_encoder;
pub mod rel_pos;
pub mod sam;
pub mod transformer;
pub mod window;

pub use block::Block;
pub use checkpoint::{
    BackboneInfo, ConvertedCheckpoint, InitFromSam, Matched, ParamSource, SamCheckpoint,
};
pub use config::ImageEncoderConfig;
pub use convert::{convert_file, ConversionReport};
pub use error::{Error, Result};
pub use extension::{BlockContext, BlockHooks, ForwardContext, LinearHook, TokenHook};
pub use image_encoder::{EncoderOutput, ImageEncoder, Neck};
pub use mask_decoder::{MaskDecoder, MaskDecoderConfig, MaskSelection};
pub use position_embedding::PositionEmbeddingRandom;
pub use prompt_encoder::{PromptEncoder, PromptEncoderConfig};
pub use sam::{Prompt, Sam, SamConfig, SamOutput};
pub use transformer::{TwoWayAttentionBlock, TwoWayTransformer, TwoWayTransformerConfig};
