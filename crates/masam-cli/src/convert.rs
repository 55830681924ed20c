//! `masam convert-sam`: an official SAM checkpoint resized to another input size (positional
//! embedding bilinearly, the global blocks' relative-position tables linearly, exactly as
//! MA-SAM's `load_from`) and saved as safetensors.

use std::path::PathBuf;

use clap::Args;
use masam_sam::convert_file;

use crate::error::{CliError, Result};

/// Flags of `masam convert-sam`.
#[derive(Args, Debug, Clone)]
pub struct ConvertArgs {
    /// The official checkpoint (.pth or .safetensors), e.g. sam_vit_b_01ec64.pth.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Target input size in pixels (MA-SAM: 512).
    #[arg(long, value_name = "PX", default_value_t = 512)]
    pub img_size: usize,
    /// Where to write the converted safetensors file.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Expected backbone (vit_b, vit_l, vit_h); detected from the tensor shapes when omitted,
    /// and the conversion fails when the file holds another one.
    #[arg(long, value_name = "NAME")]
    pub backbone: Option<String>,
    /// Keep only the image encoder's tensors.
    #[arg(long)]
    pub encoder_only: bool,
}

/// Runs `masam convert-sam`.
///
/// # Errors
/// A missing or unreadable checkpoint, a backbone mismatch, or a failed write.
pub fn run(args: &ConvertArgs) -> Result<()> {
    if !args.input.is_file() {
        return Err(CliError::not_found_hint(
            "SAM checkpoint",
            &args.input,
            "download the official weights (e.g. sam_vit_b_01ec64.pth) from the \
             segment-anything release",
        ));
    }
    if args.img_size == 0 {
        return Err(CliError::Usage("--img-size must be positive".into()));
    }
    let report = convert_file(
        &args.input,
        args.img_size,
        args.backbone.as_deref(),
        args.encoder_only,
        &args.output,
    )?;
    println!("{report}");
    Ok(())
}
