//! `masam convert-sam`: an official SAM checkpoint resized to another input size (positional
//! embedding bilinearly, the global blocks' relative-position tables linearly, exactly as
//! MA-SAM's `load_from`) and saved as safetensors.

use std::path::PathBuf;

use clap::Args;
use masam_sam::{ImageEncoderConfig, SamCheckpoint};

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
    let sam = SamCheckpoint::load(&args.input)?;
    let info = sam.backbone()?;
    println!(
        "{}: {} tensors, {} at {} px",
        args.input.display(),
        sam.tensors.len(),
        info.describe(),
        info.grid.0 * info.patch_size
    );
    let base = match &args.backbone {
        Some(name) => ImageEncoderConfig::preset(name)?,
        None => info.to_config(),
    };
    let target = base.with_img_size(args.img_size);
    let mut converted = sam.convert(&target)?;
    for key in &converted.resized {
        let before = sam.tensors[key].dims().to_vec();
        let after = converted.checkpoint.tensors[key].dims().to_vec();
        println!("  resized {key}: {before:?} -> {after:?}");
    }
    if args.encoder_only {
        converted.checkpoint.tensors = converted.checkpoint.encoder_tensors();
    }
    converted.checkpoint.save_safetensors(&args.output)?;
    println!(
        "wrote {} ({} tensors, input {} px)",
        args.output.display(),
        converted.checkpoint.tensors.len(),
        args.img_size
    );
    Ok(())
}
