//! One-call conversion of an official SAM checkpoint to another input size (what the
//! `convert_sam` example and `masam convert-sam` do).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{ImageEncoderConfig, Result, SamCheckpoint};

/// What [`convert_file`] did; `Display` prints it for people.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionReport {
    /// The source file.
    pub input: PathBuf,
    /// The written file.
    pub output: PathBuf,
    /// The detected backbone, in words.
    pub backbone: String,
    /// Input size the source was made for (pixels).
    pub source_img_size: usize,
    /// Target input size (pixels).
    pub img_size: usize,
    /// Tensors read.
    pub tensors_in: usize,
    /// Tensors written.
    pub tensors_out: usize,
    /// Interpolated tensors: (name, shape before, shape after).
    pub resized: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl fmt::Display for ConversionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} tensors, {} at {} px",
            self.input.display(),
            self.tensors_in,
            self.backbone,
            self.source_img_size
        )?;
        for (key, before, after) in &self.resized {
            writeln!(f, "  resized {key}: {before:?} -> {after:?}")?;
        }
        write!(
            f,
            "wrote {} ({} tensors, input {} px)",
            self.output.display(),
            self.tensors_out,
            self.img_size
        )
    }
}

/// Reads the SAM checkpoint `input` (.pth or .safetensors), converts it to `img_size` exactly as
/// the reference's `load_from` (see [`SamCheckpoint::convert`]), and writes it to `output` as
/// safetensors (atomically). `backbone` (`vit_b`, `vit_l`, `vit_h`) makes the conversion fail
/// unless the file holds that backbone; `encoder_only` keeps only `image_encoder.*`.
///
/// # Errors
/// Unreadable or corrupt file, backbone mismatch, missing or misshapen tensors, failed write.
pub fn convert_file(
    input: &Path,
    img_size: usize,
    backbone: Option<&str>,
    encoder_only: bool,
    output: &Path,
) -> Result<ConversionReport> {
    let sam = SamCheckpoint::load(input)?;
    let info = sam.backbone()?;
    let base = match backbone {
        Some(name) => ImageEncoderConfig::preset(name)?,
        None => info.to_config(),
    };
    let mut converted = sam.convert(&base.with_img_size(img_size))?;
    let resized = converted
        .resized
        .iter()
        .map(|k| {
            (
                k.clone(),
                sam.tensors[k].dims().to_vec(),
                converted.checkpoint.tensors[k].dims().to_vec(),
            )
        })
        .collect();
    if encoder_only {
        converted.checkpoint.tensors = converted.checkpoint.encoder_tensors();
    }
    converted.checkpoint.save_safetensors(output)?;
    Ok(ConversionReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        backbone: info.describe(),
        source_img_size: info.grid.0 * info.patch_size,
        img_size,
        tensors_in: sam.tensors.len(),
        tensors_out: converted.checkpoint.tensors.len(),
        resized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_tiny_fixture_and_reports_the_resized_tensors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference-tiny");
        let out =
            std::env::temp_dir().join(format!("masam-convert-{}.safetensors", std::process::id()));
        let r = convert_file(&dir.join("sam_base.pth"), 64, None, true, &out).unwrap();
        assert_eq!((r.source_img_size, r.img_size), (128, 64));
        assert_eq!(r.resized.len(), 5);
        assert!(r.tensors_out < r.tensors_in);
        let back = SamCheckpoint::load(&out).unwrap();
        assert_eq!(back.tensors.len(), r.tensors_out);
        assert!(r.to_string().contains("resized image_encoder.pos_embed"));
        std::fs::remove_file(&out).ok();
        assert!(convert_file(&dir.join("sam_base.pth"), 64, Some("vit_h"), false, &out).is_err());
        assert!(!out.exists());
    }
}
