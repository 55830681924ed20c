//! Predict a label map with a trained run (the library-level version of `masam predict`).
//!
//! ```text
//! cargo run --release --example predict -- --run runs/masam --input scan.nii.gz --output pred.nii.gz
//! cargo run --release --example predict -- --run runs/masam --input dicom_series/ --output pred.nii.gz
//! ```
//!
//! The model is rebuilt from the run folder (`config.toml` + `model.safetensors`), the volume is
//! preprocessed exactly as in training, and the labels are written atomically on the input's
//! grid: a NIfTI input's header geometry (qform/sform) is copied, a DICOM series' affine is used.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use clap::Parser;
use masam_adapter::predict::predict_volume;
use masam_app::RunDir;
use masam_volume::io::nifti::{is_nifti_path, NiftiReader};
use masam_volume::io::{read_volume, NiftiWriter};
use masam_volume::transforms::SliceStack;

/// Predict one volume with a trained MA-SAM run.
#[derive(Parser, Debug)]
struct Args {
    /// Run folder written by `masam finetune` / `finetune::run`.
    #[arg(long)]
    run: PathBuf,
    /// A NIfTI file or a DICOM series folder.
    #[arg(long)]
    input: PathBuf,
    /// Output NIfTI file (.nii or .nii.gz).
    #[arg(long)]
    output: PathBuf,
    /// Stacks per forward pass.
    #[arg(long, default_value_t = 4)]
    batch: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    masam_app::runtime::init_cpu_training();
    let dev = Device::Cpu;
    let run = RunDir::open(&args.run).with_context(|| format!("opening {}", args.run.display()))?;
    let model = run.load_model(None, &dev)?;
    let stack = SliceStack::new(run.config.stack_config())?;

    let (image, geometry) = if is_nifti_path(&args.input) {
        let img = NiftiReader::new().read::<f32>(&args.input)?;
        (img.volume, Some(img.geometry))
    } else {
        (read_volume(&args.input)?, None)
    };
    let t0 = std::time::Instant::now();
    let labels = predict_volume(&model, &image, &stack, args.batch, &dev)?;
    let writer = NiftiWriter::new().description("masam prediction");
    match &geometry {
        Some(g) => writer.reference(g).write(&args.output, &labels)?,
        None => writer.write(&args.output, &labels)?,
    }
    let fg = labels.data.iter().filter(|&&v| v > 0).count();
    println!(
        "{:?} voxels predicted in {:.1} s ({fg} foreground); wrote {}",
        labels.shape_zyx(),
        t0.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}
