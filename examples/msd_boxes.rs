//! Box prompts on a synthetic tumour-in-organ task in the MSD (Decathlon) layout.
//!
//! ```text
//! cargo run --example msd_boxes -- [--out runs/msd_boxes] [--steps 300] [--minutes 2]
//! ```
//!
//! 1. writes a small synthetic data set to `<out>/data`: `imagesTr/`, `labelsTr/` (training),
//!    `imagesTs/`, `labelsTs/` (held out, with labels so that it can be scored) and
//!    `dataset.json`; labels 0 background, 1 organ, 2 tumour. Each volume (16 × 64 × 64 voxels,
//!    1.5 × 1.5 × 3 mm) holds an ellipsoidal organ (60 HU) with a small hypodense tumour (30 HU)
//!    and a look-alike hypodense cyst (30 HU, labelled organ), in -80 HU fat, noise SD 15 HU:
//!    intensity alone cannot tell the tumour from the cyst; a box around the tumour can;
//! 2. trains the same small model twice with the same seed and budget, without prompts and
//!    with tight boxes of the tumour (jitter 2 px), and
//! 3. scores both on the held-out volumes (the prompted run gets the tight box of each held-out
//!    label), printing Dice and NSD (2 mm) per class.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use masam_adapter::data::Sampling;
use masam_adapter::evaluate::evaluate_with_box_prompts;
use masam_adapter::metrics::{Classes, Metric, SurfaceDiceConfig, SurfaceDiceMetric};
use masam_adapter::sam::{ImageEncoderConfig, TwoWayTransformerConfig};
use masam_adapter::volume::boxes::BoxPromptConfig;
use masam_adapter::volume::io::NiftiWriter;
use masam_adapter::volume::ndarray::Array3;
use masam_adapter::volume::transforms::IntensityConfig;
use masam_adapter::volume::Volume;
use masam_adapter::{AdamWConfig, Finetune, LrSchedule, MaSamConfig, TrainerConfig};
use masam_app::{finetune, DataSource, FinetuneConfig};
use rand::{Rng, SeedableRng};

const SHAPE: (usize, usize, usize) = (16, 64, 64);
const SPACING_XYZ: [f64; 3] = [1.5, 1.5, 3.0];

/// One synthetic case: (image HU, labels).
fn case(seed: u64) -> (Volume<f32>, Volume<u8>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (nz, ny, nx) = SHAPE;
    let c = [
        rng.random_range(6.0..10.0),
        rng.random_range(26.0..38.0),
        rng.random_range(26.0..38.0),
    ];
    let r = [
        rng.random_range(5.0..7.0),
        rng.random_range(14.0..18.0),
        rng.random_range(16.0..21.0),
    ];
    // two blobs inside the organ, on opposite sides of its centre: one tumour, one cyst
    let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let blob = |rng: &mut rand_chacha::ChaCha8Rng, s: f64| {
        [
            c[0] + rng.random_range(-2.0..2.0),
            c[1] + rng.random_range(-5.0..5.0),
            c[2] + s * rng.random_range(7.0..10.0),
        ]
    };
    let tumour = blob(&mut rng, side);
    let cyst = blob(&mut rng, -side);
    let (rt, rc) = (rng.random_range(3.0..4.5), rng.random_range(3.0..4.5));
    let d2 = |p: [f64; 3], q: [f64; 3]| {
        let dz = (p[0] - q[0]) * 2.0; // 3 mm slices vs 1.5 mm pixels
        dz * dz + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)
    };
    let mut label = Array3::<u8>::zeros(SHAPE);
    let mut image = Array3::<f32>::zeros(SHAPE);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let p = [z as f64, y as f64, x as f64];
                let e = ((p[0] - c[0]) / r[0]).powi(2)
                    + ((p[1] - c[1]) / r[1]).powi(2)
                    + ((p[2] - c[2]) / r[2]).powi(2);
                let (l, hu) = if d2(p, tumour) <= rt * rt {
                    (2, 30.0)
                } else if d2(p, cyst) <= rc * rc {
                    (1, 30.0)
                } else if e <= 1.0 {
                    (1, 60.0)
                } else {
                    (0, -80.0)
                };
                label[[z, y, x]] = l;
                // Box–Muller noise
                let (u1, u2): (f64, f64) = (rng.random_range(1e-9..1.0), rng.random());
                let n = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                image[[z, y, x]] = (hu + 15.0 * n) as f32;
            }
        }
    }
    (
        Volume::with_spacing(image, SPACING_XYZ),
        Volume::with_spacing(label, SPACING_XYZ),
    )
}

/// Writes the MSD layout; returns (train pairs, held-out pairs).
type Pairs = Vec<(PathBuf, PathBuf)>;
fn write_dataset(root: &Path, n_train: usize, n_test: usize) -> Result<(Pairs, Pairs)> {
    let mut out = (vec![], vec![]);
    let mut entries = (vec![], vec![]);
    for i in 0..n_train + n_test {
        let (split, imgs, labs) = if i < n_train {
            (0, "imagesTr", "labelsTr")
        } else {
            (1, "imagesTs", "labelsTs")
        };
        let name = format!("synth_{i:03}.nii.gz");
        let (img, lab) = case(1000 + i as u64);
        let (ip, lp) = (root.join(imgs).join(&name), root.join(labs).join(&name));
        for d in [ip.parent(), lp.parent()].into_iter().flatten() {
            std::fs::create_dir_all(d)?;
        }
        NiftiWriter::new().write(&ip, &img)?;
        NiftiWriter::new().write(&lp, &lab)?;
        let entry = serde_json::json!({
            "image": format!("./{imgs}/{name}"),
            "label": format!("./{labs}/{name}"),
        });
        if split == 0 {
            out.0.push((ip, lp));
            entries.0.push(entry);
        } else {
            out.1.push((ip, lp));
            entries.1.push(entry);
        }
    }
    let json = serde_json::json!({
        "name": "SyntheticTumourInOrgan",
        "description": "synthetic organ with a tumour and a look-alike cyst (masam msd_boxes)",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ", "2": "tumour"},
        "numTraining": n_train,
        "numTest": n_test,
        "training": entries.0,
        "test": entries.1,
    });
    std::fs::write(
        root.join("dataset.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(out)
}

fn model() -> MaSamConfig {
    let mut enc = ImageEncoderConfig::tiny();
    enc.patch_size = 8; // 8 × 8 tokens at 64 px
    let mut m = MaSamConfig::from_backbone(enc, 64, 2);
    m.sam.decoder.transformer = TwoWayTransformerConfig::tiny();
    m.sam.decoder.upscaling_channels = vec![32, 16, 8]; // 8 → 64 px
    m.sam.decoder.pixel_skip = true;
    m.fact = None;
    m.adapter = Some(masam_adapter::conv3d::Adapter3dConfig::for_dim(64).with_channels(16));
    m.finetune = Finetune::Full;
    m
}

fn config(data: DataSource, out: PathBuf, steps: u64, minutes: f64) -> FinetuneConfig {
    FinetuneConfig {
        model: model(),
        trainer: TrainerConfig {
            steps,
            batch: 2,
            accumulation: 1,
            optimizer: AdamWConfig::default().with_weight_decay(0.01),
            schedule: LrSchedule::WarmupPoly {
                base_lr: 1e-3,
                warmup_iters: 20,
                max_iter: steps,
                power: 0.9,
            },
            seed: 7,
            ..TrainerConfig::default()
        },
        data,
        sam_checkpoint: None,
        time_budget_s: Some(minutes * 60.0),
        augment: false,
        sampling: Sampling::Uniform,
        device: "cpu".into(),
        eval_batch: 8,
        intensity: IntensityConfig::ct_abdomen(),
        out_dir: out,
        checkpoint_every: 0,
        resume: false,
        eval_every: 0,
        export_reference: false,
        box_prompt: None,
        fit_schedule_to_budget: false,
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let out = PathBuf::from(flag("--out").unwrap_or_else(|| "runs/msd_boxes".into()));
    let steps: u64 = flag("--steps")
        .map_or(Ok(300), |s| s.parse())
        .context("--steps")?;
    let minutes: f64 = flag("--minutes")
        .map_or(Ok(2.0), |s| s.parse())
        .context("--minutes")?;
    let (train, test) = write_dataset(&out.join("data"), 6, 3)?;
    println!(
        "data: {} (6 training, 3 held-out volumes)",
        out.join("data").display()
    );
    let data = DataSource::Files {
        train,
        test: test.clone(),
    };
    let names = ["organ".to_string(), "tumour".to_string()];
    let held_out = data.load()?.test;
    println!(
        "| run | steps | train s | organ Dice | tumour Dice | organ NSD@2mm | tumour NSD@2mm |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, prompt) in [
        ("no prompt", None),
        (
            "tight boxes (tumour, jitter 2 px)",
            Some(BoxPromptConfig {
                jitter: 2.0,
                ..BoxPromptConfig::tight(2)
            }),
        ),
    ] {
        let dir = out.join(if prompt.is_some() { "boxes" } else { "plain" });
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = config(data.clone(), dir, steps, minutes);
        cfg.box_prompt = prompt;
        let (m, report) = finetune::run(&cfg, |_| {})?;
        let (dice, preds) = evaluate_with_box_prompts(
            &m,
            &held_out,
            &cfg.stack_config(),
            &names,
            cfg.eval_batch,
            prompt.as_ref(),
        )?;
        let classes = Classes::foreground(2).with_names(names.to_vec())?;
        let mut nsd =
            SurfaceDiceMetric::new(SurfaceDiceConfig::default().with_tolerance_mm(2.0), classes)?;
        for (i, (case, pred)) in held_out.iter().zip(&preds).enumerate() {
            let s = case.image.spacing;
            nsd.update_case(
                format!("case_{i}"),
                pred.data.view(),
                case.label.data.view(),
                [s[2], s[1], s[0]],
            )?;
        }
        let (d, n) = (dice.class_means(), nsd.aggregate().class_means());
        println!(
            "| {label} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
            report.steps, report.train_seconds, d[0], d[1], n[0], n[1]
        );
    }
    Ok(())
}
