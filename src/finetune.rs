//! A whole fine-tuning run as a library call: data, model, training with a time/step budget,
//! checkpoints, held-out evaluation and the files a researcher looks at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use masam_metrics::{Classes, DiceConfig, DiceMetric, Metric, MetricReport};
use masam_sam::SamCheckpoint;
use masam_volume::augment::{Recipe, RecipeConfig};
use masam_volume::phantom::{Organ, Phantom, PhantomConfig};
use masam_volume::transforms::{SliceStack, StackConfig};
use serde::{Deserialize, Serialize};

use crate::data::{BatchLoader, InMemoryStacks, LabelledVolume, StackSource};
use crate::model::MaSam;
use crate::predict::predict_volume;
use crate::trainer::{StepStats, Trainer, TrainerConfig};
use crate::{Error, MaSamConfig, Result};

/// Where the training and test volumes come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    /// The synthetic abdomen phantom of masam-volume (12 organs, BTCV label order). SYNTHETIC.
    Phantom {
        /// Phantom geometry.
        phantom: PhantomConfig,
        /// Training volumes (seeds 0..n).
        train_cases: usize,
        /// Held-out volumes (seeds 10 000..).
        test_cases: usize,
    },
    /// A BTCV folder (`img/imgXXXX.nii.gz`, `label/labelXXXX.nii.gz`), the reference split
    /// (test = 0035-0040), label 13 merged into 12.
    Btcv {
        /// The folder.
        root: PathBuf,
    },
    /// Explicit (image, label) NIfTI or DICOM pairs; labels are class ids 0..=num_classes.
    Files {
        /// Training pairs.
        train: Vec<(PathBuf, PathBuf)>,
        /// Held-out pairs.
        test: Vec<(PathBuf, PathBuf)>,
    },
}

/// One fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// The model.
    pub model: MaSamConfig,
    /// Optimisation.
    pub trainer: TrainerConfig,
    /// The data.
    pub data: DataSource,
    /// Official SAM checkpoint for the backbone (`None`: random initialisation).
    pub sam_checkpoint: Option<PathBuf>,
    /// Stop training after this many seconds (on top of `trainer.steps`).
    pub time_budget_s: Option<f64>,
    /// Apply the reference augmentation recipe.
    pub augment: bool,
    /// How training stacks are picked (uniform like the reference, or class-balanced).
    #[serde(default)]
    pub sampling: crate::data::Sampling,
    /// Where the model trains: `cpu`, `cuda` or `cuda:N` (CUDA needs the `cuda` feature).
    #[serde(default = "crate::device::default_device")]
    pub device: String,
    /// Windows per forward pass during evaluation.
    pub eval_batch: usize,
    /// Intensity chain of the stacks (reference CT abdomen window by default).
    pub intensity: masam_volume::transforms::IntensityConfig,
    /// Run folder: config, checkpoints, metrics, curves.
    pub out_dir: PathBuf,
    /// Save a training checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Continue from `out_dir/train_state.safetensors` if it exists.
    pub resume: bool,
    /// Evaluate on the held-out volumes every this many steps and keep the best model as
    /// `model_best.safetensors` (0: evaluate only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Also write the trainable tensors in the reference's checkpoint format
    /// (`masam_adapter.safetensors`; parameter-efficient runs only).
    #[serde(default)]
    pub export_reference: bool,
}

impl DataSource {
    /// The embedded default data: 12 training and 3 held-out synthetic phantom volumes
    /// (128 × 128 × 48).
    pub fn phantom_default() -> Self {
        DataSource::Phantom {
            phantom: PhantomConfig::default(),
            train_cases: 12,
            test_cases: 3,
        }
    }
}

impl FinetuneConfig {
    /// The embedded default run (`docs/btcv_finetune.md`): the synthetic phantom and a small ViT
    /// (C 96, 4 blocks, patch 16, 128 px) trained end to end without SAM weights, with the
    /// decoder's pixel skips and class-balanced stack sampling; batch 2, lr 1.5e-3 with poly
    /// decay over 1 600 steps, an 8.5-minute training budget on 2 cores.
    pub fn phantom_default(steps: u64, seed: u64, out_dir: PathBuf) -> Self {
        let mut enc = masam_sam::ImageEncoderConfig::vit_b();
        enc.embed_dim = 96;
        enc.depth = 4;
        enc.num_heads = 4;
        enc.global_attn_indexes = vec![1, 3];
        enc.window_size = 4;
        enc.patch_size = 16;
        enc.out_chans = 64;
        let mut model = MaSamConfig::from_backbone(enc, 128, 12);
        model.sam.decoder.upscaling_channels = vec![32, 16, 16, 8];
        // full-resolution image features in the upscaling stages: at patch 16 a token covers
        // 47 mm, and the small organs are only a few pixels wide
        model.sam.decoder.pixel_skip = true;
        model.sam.decoder.transformer.num_heads = 4;
        model.sam.decoder.transformer.mlp_dim = 256;
        model.fact = None;
        model.adapter = Some(masam_conv3d::Adapter3dConfig::for_dim(96).with_channels(48));
        model.finetune = crate::Finetune::Full;
        Self {
            model,
            trainer: TrainerConfig {
                steps,
                batch: 2,
                accumulation: 1,
                optimizer: masam_train::AdamWConfig::default().with_weight_decay(0.01),
                schedule: masam_train::LrSchedule::WarmupPoly {
                    base_lr: 1.5e-3,
                    warmup_iters: 50,
                    // about the number of steps the time budget allows on 2 cores
                    max_iter: 1_600,
                    power: 0.9,
                },
                seed,
                ..TrainerConfig::default()
            },
            data: DataSource::phantom_default(),
            sam_checkpoint: None,
            time_budget_s: Some(8.5 * 60.0),
            // a short budget learns faster without the reference's heavy augmentation; the
            // phantom already varies anatomy from case to case
            augment: false,
            // half of the stacks are drawn per organ, so that adrenals and gallbladder are
            // seen as often as the liver
            sampling: crate::data::Sampling::ClassBalanced(0.5),
            device: crate::device::default_device(),
            eval_batch: 8,
            intensity: masam_volume::transforms::IntensityConfig::ct_abdomen(),
            out_dir,
            checkpoint_every: 100,
            resume: false,
            eval_every: 0,
            export_reference: false,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct FinetuneReport {
    /// Steps trained.
    pub steps: u64,
    /// Training wall time (s).
    pub train_seconds: f64,
    /// Per-step statistics.
    pub history: Vec<StepStats>,
    /// Held-out Dice (cases × classes) at the end, if there were test volumes.
    pub dice: Option<MetricReport>,
    /// (step, mean held-out Dice) of the periodic evaluations.
    pub evaluations: Vec<(u64, f64)>,
}

/// Loads the configured volumes: (train, test, class names).
pub fn load_data(
    src: &DataSource,
) -> Result<(Vec<LabelledVolume>, Vec<LabelledVolume>, Vec<String>)> {
    match src {
        DataSource::Phantom {
            phantom,
            train_cases,
            test_cases,
        } => {
            let p = Phantom::new(phantom.clone())
                .map_err(|e| Error::Config(format!("phantom: {e}")))?;
            let case = |s: u64| {
                let (image, label) = p.case(s);
                LabelledVolume { image, label }
            };
            let train = (0..*train_cases as u64).map(case).collect();
            let test = (0..*test_cases as u64).map(|i| case(10_000 + i)).collect();
            let names = (1..=12u8)
                .map(|l| {
                    Organ::from_label(l)
                        .map(|o| o.name().to_string())
                        .unwrap_or_default()
                })
                .collect();
            Ok((train, test, names))
        }
        DataSource::Btcv { root } => {
            let verr = |e: masam_volume::VolumeError| Error::Config(e.to_string());
            let cases = masam_volume::dataset::btcv::cases(root).map_err(verr)?;
            let (mut train, mut test) = (vec![], vec![]);
            for c in cases {
                let Some(label_path) = &c.label else { continue };
                let mut lv = load_pair(&c.image, label_path)?;
                lv.label.data.mapv_inplace(|v| if v == 13 { 12 } else { v });
                let id: u32 =
                    c.id.trim_start_matches(|ch: char| !ch.is_ascii_digit())
                        .parse()
                        .unwrap_or(0);
                if (35..=40).contains(&id) {
                    test.push(lv)
                } else {
                    train.push(lv)
                }
            }
            if train.is_empty() {
                return Err(Error::Config(format!(
                    "no labelled BTCV cases under {}",
                    root.display()
                )));
            }
            let names = (1..=12).map(|i| format!("class_{i}")).collect();
            Ok((train, test, names))
        }
        DataSource::Files { train, test } => {
            let load = |pairs: &Vec<(PathBuf, PathBuf)>| -> Result<Vec<LabelledVolume>> {
                pairs.iter().map(|(i, l)| load_pair(i, l)).collect()
            };
            let train = load(train)?;
            if train.is_empty() {
                return Err(Error::Config("no training pairs".into()));
            }
            Ok((train, load(test)?, vec![]))
        }
    }
}

/// Reads an image and its label map (NIfTI file or DICOM series folder each) and checks that
/// they share the grid.
pub fn load_pair(image: &Path, label: &Path) -> Result<LabelledVolume> {
    let verr = |e: masam_volume::VolumeError| Error::Config(e.to_string());
    let img = masam_volume::io::read_volume(image).map_err(verr)?;
    let lab = masam_volume::io::read_volume(label)
        .map_err(verr)?
        .map(|v: &f32| v.round().clamp(0.0, 255.0) as u8);
    if img.data.shape() != lab.data.shape() {
        return Err(Error::Config(format!(
            "{} has shape {:?} but its label {} has {:?}",
            image.display(),
            img.data.shape(),
            label.display(),
            lab.data.shape()
        )));
    }
    Ok(LabelledVolume {
        image: img,
        label: lab,
    })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The stack settings matching `model` and the data source (phantom volumes are generated in the
/// model's orientation; files get the reference orientation).
pub fn stack_config(cfg: &FinetuneConfig) -> StackConfig {
    let img = cfg.model.sam.encoder.img_size;
    StackConfig {
        out_size: Some((img, img)),
        orient: !matches!(cfg.data, DataSource::Phantom { .. }),
        intensity: cfg.intensity,
        ..StackConfig::default()
    }
    .with_depth(cfg.model.slices)
}

/// Runs training then held-out evaluation; `on_step` sees every step (progress display).
pub fn run(
    cfg: &FinetuneConfig,
    mut on_step: impl FnMut(&StepStats),
) -> Result<(MaSam, FinetuneReport)> {
    crate::runtime::tune_allocator();
    let dev = crate::device::parse_device(&cfg.device)?;
    std::fs::create_dir_all(&cfg.out_dir).map_err(io_err(&cfg.out_dir))?;
    let cfg_text =
        toml::to_string_pretty(cfg).map_err(|e| Error::Config(format!("config: {e}")))?;
    std::fs::write(cfg.out_dir.join("config.toml"), cfg_text).map_err(io_err(&cfg.out_dir))?;

    let model = match &cfg.sam_checkpoint {
        Some(p) => MaSam::from_sam_checkpoint(
            &cfg.model,
            &SamCheckpoint::load(p)?,
            cfg.trainer.seed,
            &dev,
        )?,
        None => MaSam::random(&cfg.model, cfg.trainer.seed, &dev)?,
    };
    let (train, test, names) = load_data(&cfg.data)?;
    let scfg = stack_config(cfg);
    let verr = |e: masam_volume::VolumeError| Error::Config(e.to_string());
    let recipe = if cfg.augment {
        Some(
            Recipe::new(RecipeConfig::reference(), cfg.trainer.seed)
                .map_err(|e| Error::Config(e.to_string()))?,
        )
    } else {
        None
    };
    let source: Arc<dyn StackSource> = Arc::new(InMemoryStacks::new(
        train,
        SliceStack::new(scfg).map_err(verr)?,
        recipe,
    )?);

    let mut trainer = Trainer::new(&model, cfg.trainer.clone())?;
    let ckpt = cfg.out_dir.join("train_state.safetensors");
    if cfg.resume && ckpt.exists() {
        trainer.resume(&ckpt)?;
    }
    let mut loader = BatchLoader::spawn_with(
        source,
        cfg.trainer.batch,
        cfg.trainer.seed,
        trainer.current_step() * cfg.trainer.accumulation as u64,
        4,
        cfg.sampling,
    )?;
    let start = Instant::now();
    let mut history = vec![];
    let mut evals: Vec<(u64, f64)> = vec![];
    let mut best: Option<f64> = None;
    while trainer.current_step() < cfg.trainer.steps
        && cfg
            .time_budget_s
            .is_none_or(|b| start.elapsed().as_secs_f64() < b)
    {
        let micro: Vec<_> = (0..cfg.trainer.accumulation)
            .map(|_| loader.next_batch().map(|(_, b)| b))
            .collect::<Result<_>>()?;
        let s = trainer.step(&micro)?;
        on_step(&s);
        history.push(s);
        if cfg.checkpoint_every > 0 && trainer.current_step() % cfg.checkpoint_every == 0 {
            trainer.save(&ckpt)?;
        }
        if cfg.eval_every > 0 && !test.is_empty() && trainer.current_step() % cfg.eval_every == 0 {
            let mean = evaluate(&model, &test, &scfg, &names, cfg.eval_batch)?.mean();
            evals.push((trainer.current_step(), mean));
            if best.is_none_or(|b| mean > b) {
                best = Some(mean);
                model.save_trainable(cfg.out_dir.join("model_best.safetensors"))?;
            }
        }
    }
    drop(loader);
    let train_seconds = start.elapsed().as_secs_f64();
    trainer.save(&ckpt)?;
    model.save_trainable(cfg.out_dir.join("model.safetensors"))?;
    let mut csv = String::from("step,lr,loss,ce,dice\n");
    for s in &history {
        csv.push_str(&format!(
            "{},{:.6e},{:.6},{:.6},{:.6}\n",
            s.step, s.lr, s.loss, s.ce, s.dice
        ));
    }
    std::fs::write(cfg.out_dir.join("loss.csv"), csv).map_err(io_err(&cfg.out_dir))?;

    let (dice, preds) = if test.is_empty() {
        (None, vec![])
    } else {
        let (report, preds) =
            evaluate_with_predictions(&model, &test, &scfg, &names, cfg.eval_batch)?;
        let merr = |e: masam_metrics::MetricsError| Error::Config(e.to_string());
        report
            .write_csv(cfg.out_dir.join("metrics.csv"))
            .map_err(merr)?;
        report
            .write_json(cfg.out_dir.join("metrics.json"))
            .map_err(merr)?;
        (Some(report), preds)
    };
    let window = (
        cfg.intensity.window.a_min as f32,
        cfg.intensity.window.a_max as f32,
    );
    write_figures(
        &cfg.out_dir,
        &history,
        &evals,
        &test,
        &preds,
        &names,
        window,
    )?;
    if cfg.export_reference {
        model.save_reference(cfg.out_dir.join("masam_adapter.safetensors"))?;
    }
    let steps = trainer.current_step();
    Ok((
        model,
        FinetuneReport {
            steps,
            train_seconds,
            history,
            dice,
            evaluations: evals,
        },
    ))
}

/// Held-out Dice of `model` on `test` volumes (predicted with the sliding window on their own
/// grids), one row per volume, one column per foreground class.
pub fn evaluate(
    model: &MaSam,
    test: &[LabelledVolume],
    stack: &StackConfig,
    names: &[String],
    batch: usize,
) -> Result<MetricReport> {
    Ok(evaluate_with_predictions(model, test, stack, names, batch)?.0)
}

/// [`evaluate`], also returning the predicted label volumes.
pub fn evaluate_with_predictions(
    model: &MaSam,
    test: &[LabelledVolume],
    stack: &StackConfig,
    names: &[String],
    batch: usize,
) -> Result<(MetricReport, Vec<masam_volume::Volume<u8>>)> {
    let dev = model.device().clone();
    let k = model.config.num_classes();
    let names: Vec<String> = if names.len() == k {
        names.to_vec()
    } else {
        (1..=k).map(|i| format!("class_{i}")).collect()
    };
    let merr = |e: masam_metrics::MetricsError| Error::Config(e.to_string());
    let classes = Classes::foreground(k).with_names(names).map_err(merr)?;
    let mut metric = DiceMetric::new(DiceConfig::default(), classes).map_err(merr)?;
    let stack = SliceStack::new(*stack).map_err(|e| Error::Config(e.to_string()))?;
    let mut preds = Vec::with_capacity(test.len());
    for (i, case) in test.iter().enumerate() {
        let pred = predict_volume(model, &case.image, &stack, batch, &dev)?;
        let s = case.image.spacing;
        metric
            .update_case(
                format!("case_{i}"),
                pred.data.view(),
                case.label.data.view(),
                [s[2], s[1], s[0]],
            )
            .map_err(merr)?;
        preds.push(pred);
    }
    Ok((metric.aggregate(), preds))
}

/// Writes `loss.png` (loss and its moving average per step), `dice.png` (periodic held-out Dice)
/// and, for the first held-out volumes, `overlay_case{i}_z{z}.png` panels (image, ground truth,
/// prediction) into `dir`.
pub fn write_figures(
    dir: &Path,
    history: &[StepStats],
    evaluations: &[(u64, f64)],
    test: &[LabelledVolume],
    preds: &[masam_volume::Volume<u8>],
    names: &[String],
    window: (f32, f32),
) -> Result<()> {
    use crate::render::overlay::{overlay_panel, pick_slices, PanelStyle, Window};
    use crate::render::plot::{ema, LinePlot};
    let rerr = |e: crate::render::RenderError| Error::Config(format!("rendering: {e}"));
    let loss: Vec<(f64, f64)> = history
        .iter()
        .map(|s| (s.step as f64, s.loss as f64))
        .collect();
    if !loss.is_empty() {
        LinePlot::new("training loss (0.2 CE + 0.8 Dice)")
            .x_label("step")
            .y_label("loss")
            .series("loss", loss.clone())
            .series("moving average", ema(&loss, 0.95))
            .save_png(dir.join("loss.png"))
            .map_err(rerr)?;
    }
    if !evaluations.is_empty() {
        LinePlot::new("held-out mean Dice")
            .x_label("step")
            .y_label("Dice")
            .series(
                "mean Dice",
                evaluations.iter().map(|(s, d)| (*s as f64, *d)),
            )
            .save_png(dir.join("dice.png"))
            .map_err(rerr)?;
    }
    let style = PanelStyle {
        window: Window {
            lo: window.0,
            hi: window.1,
        },
        scale: 2,
        // the palette names index 0 as background
        class_names: if names.is_empty() {
            None
        } else {
            Some(
                std::iter::once("background".to_string())
                    .chain(names.iter().cloned())
                    .collect(),
            )
        },
        ..PanelStyle::default()
    };
    for (i, (case, pred)) in test.iter().zip(preds).enumerate().take(2) {
        for z in pick_slices(case.label.data.view(), 3) {
            let img = case
                .image
                .data
                .index_axis(masam_volume::ndarray::Axis(0), z);
            let img = style.window.apply(img).map_err(rerr)?;
            let panel = overlay_panel(
                img.view(),
                case.label
                    .data
                    .index_axis(masam_volume::ndarray::Axis(0), z),
                pred.data.index_axis(masam_volume::ndarray::Axis(0), z),
                &format!("case {i}, slice {z}"),
                &PanelStyle {
                    window: Window::UNIT,
                    ..style.clone()
                },
            )
            .map_err(rerr)?;
            crate::render::save_png(&panel, dir.join(format!("overlay_case{i}_z{z}.png")))
                .map_err(rerr)?;
        }
    }
    Ok(())
}
