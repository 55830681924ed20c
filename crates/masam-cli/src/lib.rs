//! The `masam` command-line tool, as a library: every subcommand is a function taking its
//! parsed flags, so the same code runs from the binary, from tests and from other programs.
//!
//! | subcommand | module | what it does |
//! |---|---|---|
//! | `masam finetune` | [`finetune`] | a whole fine-tuning run into a run folder |
//! | `masam predict` | [`predict`] | label maps for NIfTI files, DICOM series, NIfTI folders |
//! | `masam evaluate` | [`evaluate`] | Dice, HD95, ASD, NSD per class, JSON + CSV |
//! | `masam convert-sam` | [`convert`] | resize an official SAM checkpoint |
//!
//! See `docs/cli.md` for examples.

pub mod convert;
pub mod error;
pub mod evaluate;
pub mod finetune;
pub mod label_check;
pub mod predict;
pub mod progress;

use clap::{Parser, Subcommand};

pub use error::{BatchFailure, CliError, Result};

/// MA-SAM for 3D medical image segmentation: fine-tune on your CT/MRI volumes, predict label
/// maps, evaluate them.
///
/// Typical session:
///   masam finetune --phantom --minutes 2 --out runs/demo       (a quick synthetic run)
///   masam predict --run runs/demo --input scan.nii.gz --output pred.nii.gz
///   masam evaluate --pred preds/ --gt labels/ --out metrics/
///
/// Logs go to stderr; set RUST_LOG=debug for more (RUST_LOG=warn for less).
#[derive(Parser, Debug)]
#[command(name = "masam", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fine-tune MA-SAM (on a data folder, or on the synthetic phantom) and evaluate the
    /// held-out volumes. `masam finetune --print-config` prints a configuration to start from.
    Finetune(Box<finetune::FinetuneArgs>),
    /// Predict label maps with a trained run: a NIfTI file, a DICOM series folder or a folder of
    /// NIfTI files in; NIfTI label maps on each input's grid out.
    Predict(predict::PredictArgs),
    /// Score predicted label maps against ground truths (matched by file name): Dice, HD95,
    /// ASD and NSD per class, printed and written as JSON + CSV.
    Evaluate(evaluate::EvaluateArgs),
    /// Convert an official SAM checkpoint (.pth) to another input size, as safetensors.
    ConvertSam(convert::ConvertArgs),
}

/// Runs a parsed command line.
///
/// # Errors
/// The subcommand's error.
pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Finetune(a) => finetune::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Evaluate(a) => evaluate::run(a).map(|_| ()),
        Command::ConvertSam(a) => convert::run(a),
    }
}
