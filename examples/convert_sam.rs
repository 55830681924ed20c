//! Converts an official SAM checkpoint to another input size and saves it as safetensors.
//!
//! ```text
//! cargo run --example convert_sam -- --input sam_vit_b_01ec64.pth --img-size 512 \
//!     --output sam_vit_b_512.safetensors
//! ```
//!
//! The backbone is detected from the tensor shapes; `--backbone vit_b|vit_l|vit_h` makes the
//! conversion fail unless the file holds that backbone. `pos_embed` is resized bilinearly and the
//! global blocks' relative-position tables linearly, exactly as MA-SAM's `load_from`; every other
//! tensor (prompt encoder, mask decoder) is copied unchanged unless `--encoder-only` is given.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use masam_sam::convert_file;

/// Convert an official SAM checkpoint (.pth or .safetensors) to another input size.
#[derive(Parser, Debug)]
struct Args {
    /// The official checkpoint, e.g. sam_vit_b_01ec64.pth.
    #[arg(long)]
    input: PathBuf,
    /// Target input size in pixels (MA-SAM: 512).
    #[arg(long, default_value_t = 512)]
    img_size: usize,
    /// Where to write the converted safetensors file.
    #[arg(long)]
    output: PathBuf,
    /// Expected backbone (vit_b, vit_l, vit_h); detected from the file when omitted.
    #[arg(long)]
    backbone: Option<String>,
    /// Keep only the image encoder's tensors.
    #[arg(long)]
    encoder_only: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = convert_file(
        &args.input,
        args.img_size,
        args.backbone.as_deref(),
        args.encoder_only,
        &args.output,
    )
    .with_context(|| format!("converting {}", args.input.display()))?;
    println!("{report}");
    Ok(())
}
