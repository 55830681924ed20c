//! Score predicted label maps against ground truths (the library-level version of
//! `masam evaluate`): Dice, HD95, ASD and NSD per class, with each volume's voxel spacing.
//!
//! ```text
//! cargo run --release --example evaluate -- --pred preds/ --gt labels/ --classes 12 --out metrics.json
//! ```
//!
//! Every NIfTI file of `--pred` is paired with the ground truth of the same name in `--gt`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use masam_metrics::{
    Classes, DiceConfig, DiceMetric, Hd95Metric, Metric, SurfaceDiceConfig, SurfaceDiceMetric,
    SurfaceDistanceConfig, SurfaceDistanceMetric,
};
use masam_volume::io::nifti::{is_nifti_path, stem_of, NiftiReader};

/// Evaluate a folder of predictions against a folder of ground truths.
#[derive(Parser, Debug)]
struct Args {
    /// Folder of predicted label maps (NIfTI).
    #[arg(long)]
    pred: PathBuf,
    /// Folder of ground-truth label maps with the same file names.
    #[arg(long)]
    gt: PathBuf,
    /// Foreground classes 1..=K.
    #[arg(long)]
    classes: usize,
    /// NSD tolerance (mm).
    #[arg(long, default_value_t = 1.0)]
    nsd_tolerance: f64,
    /// Where to write all reports as one JSON file.
    #[arg(long, default_value = "metrics.json")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    masam_app::runtime::init_cpu_training();
    let args = Args::parse();
    let classes = Classes::foreground(args.classes);
    let mut dice = DiceMetric::new(DiceConfig::default(), classes.clone())?;
    let mut hd95 = Hd95Metric::hd95(classes.clone())?;
    let mut asd = SurfaceDistanceMetric::new(SurfaceDistanceConfig::default(), classes.clone())?;
    let nsd_cfg = SurfaceDiceConfig::default().with_tolerance_mm(args.nsd_tolerance);
    let mut nsd = SurfaceDiceMetric::new(nsd_cfg, classes)?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.pred)
        .with_context(|| format!("reading {}", args.pred.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()).filter(|p| is_nifti_path(p)))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no NIfTI in {}", args.pred.display());
    let read = |p: &PathBuf| NiftiReader::new().read::<u16>(p).map(|i| i.volume);
    for pred_path in files {
        let gt_path = args.gt.join(pred_path.file_name().unwrap());
        let pred = read(&pred_path)?;
        let gt = read(&gt_path).with_context(|| format!("ground truth {}", gt_path.display()))?;
        let (s, case) = (gt.spacing, stem_of(&pred_path)); // spacing (x, y, z)
        let (p, g, zyx) = (pred.data.view(), gt.data.view(), [s[2], s[1], s[0]]);
        dice.update_case(&case, p, g, zyx)?;
        hd95.update_case(&case, p, g, zyx)?;
        asd.update_case(&case, p, g, zyx)?;
        nsd.update_case(&case, p, g, zyx)?;
    }
    let reports = [
        dice.aggregate(),
        hd95.aggregate(),
        asd.aggregate(),
        nsd.aggregate(),
    ];
    for r in &reports {
        println!("{r:.4}\n");
    }
    masam_metrics::write_reports_json(&reports, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
