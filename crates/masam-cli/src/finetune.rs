//! `masam finetune`: a whole fine-tuning run ([`masam_app::finetune::run`]) from a TOML file
//! and/or flags, with a progress bar, the held-out Dice table at the end, and every artefact in
//! the run folder.

use std::path::{Path, PathBuf};

use clap::Args;
use masam_adapter::conv3d::Adapter3dConfig;
use masam_adapter::dist::DistEnv;
use masam_adapter::fact::FactConfig;
use masam_adapter::volume::dataset::amos::Modality;
use masam_adapter::{AdapterPlacement, Finetune, ImageEncoderConfig};
use masam_app::{
    finetune, launch, parallel, run_dir, DataSource, FinetuneConfig, Protocol, Task, TaskOptions,
};

use crate::error::{CliError, Result};
use crate::progress;

/// Flags of `masam finetune`.
#[derive(Args, Debug, Clone, Default)]
pub struct FinetuneArgs {
    /// Run configuration (TOML, as written to `<out>/config.toml` or by `--print-config`).
    /// Flags given as well override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training data folder: with --task, that task's download as it unpacks (docs/tasks/);
    /// without, a BTCV folder (`img/imgXXXX.nii.gz` + `label/labelXXXX.nii.gz`,
    /// cases 0035-0040 held out) or an nnU-Net-style folder (`imagesTr/` + `labelsTr/` with
    /// same-named files, optional `imagesTs/` + `labelsTs/` held out).
    #[arg(long, value_name = "DIR", conflicts_with = "phantom")]
    pub data: Option<PathBuf>,
    /// Train on the built-in SYNTHETIC abdomen phantom (12 organs; the default without --data).
    #[arg(long)]
    pub phantom: bool,
    /// Foreground classes of the labels (with --data; BTCV: 12).
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
    /// Official SAM checkpoint (`sam_vit_b_01ec64.pth` or a converted `.safetensors`) for the
    /// frozen backbone; needed with --data unless the config trains the whole model.
    #[arg(long, value_name = "FILE")]
    pub sam_checkpoint: Option<PathBuf>,
    /// SAM backbone preset: vit_b, vit_l or vit_h (must match --sam-checkpoint).
    #[arg(long, value_name = "NAME")]
    pub backbone: Option<String>,
    /// Maximum optimiser steps.
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Training time budget in minutes (training stops at whichever of --steps / --minutes
    /// comes first).
    #[arg(long, value_name = "M")]
    pub minutes: Option<f64>,
    /// Run folder: config.toml, model.safetensors, train_state.safetensors, loss.csv,
    /// metrics.csv/json [default: runs/masam or the config's out_dir].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in --out (its config.toml is reused unless --config is given).
    #[arg(long)]
    pub resume: bool,
    /// Run seed (data order, augmentation, fresh weights, FacT dropout).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Deterministic run: stopped at any point (even killed) and continued with --resume, it
    /// ends with the same model, bit for bit, as an uninterrupted run. Trains exactly --steps
    /// steps (no time budget; not with --minutes), on the CPU. Kept by --resume.
    #[arg(long, conflicts_with = "minutes")]
    pub deterministic: bool,
    /// Activation checkpointing of the encoder blocks: keep only each block's input during the
    /// forward pass and run the blocks again, one at a time, in the backward pass. Much less
    /// activation memory (one block's instead of all of them) for one more forward pass of the
    /// encoder per step; the same results up to float rounding. Kept by --resume
    /// (`trainer.checkpoint_blocks` in config.toml).
    #[arg(long)]
    pub checkpoint_blocks: bool,
    /// Device to train on: cpu (default), cuda or cuda:N (CUDA needs a build with
    /// `--features cuda`).
    #[arg(long, value_name = "DEV")]
    pub device: Option<String>,
    /// Data-parallel training on N GPUs of this node: starts one process per GPU (rank i on
    /// cuda:i) joined through NCCL; `--batch` is per GPU, so the global batch is N × batch.
    /// Needs a build with `--features nccl`. On several nodes, start one process per GPU
    /// yourself with RANK, WORLD_SIZE, LOCAL_RANK and MASAM_RENDEZVOUS set (docs/gpu.md).
    #[arg(long, value_name = "N", conflicts_with = "ranks")]
    pub gpus: Option<usize>,
    /// Data-parallel training with N ranks as threads of this process on the CPU (the same
    /// code path as --gpus, for testing it; `--batch` is per rank).
    #[arg(long, value_name = "N")]
    pub ranks: Option<usize>,
    /// Numeric precision: `f32`, or mixed precision `bf16` / `f16` (frozen weights and
    /// activations in the half type, f32 master weights, optimiser state, softmax, LayerNorm
    /// statistics and loss; f16 with dynamic loss scaling) [default: f32, or the config's
    /// `trainer.precision`]. For GPUs: on the CPU the half types are slower than f32.
    #[arg(long, value_name = "P", value_parser = ["f32", "bf16", "f16"])]
    pub precision: Option<String>,
    /// Mask decoder: `sam` (SAM's 2 upscaling stages, then bilinear to the input size),
    /// `progressive` (the reference's 4 transposed-convolution stages) or `fusion` (the
    /// progressive stages fused with intermediate encoder features, U-shaped) [default:
    /// progressive, or the config's].
    #[arg(long, value_name = "KIND", value_parser = ["sam", "progressive", "fusion"])]
    pub decoder: Option<String>,
    /// Box prompts: `tight` (the 3D box of --box-class in each volume's label), `relaxed` (that
    /// box grown by --box-margin voxels per face) or `none` (prompt-free MA-SAM) [default: none,
    /// or the config's `box_prompt`]. Training boxes are jittered by --box-jitter pixels; held-out
    /// volumes are predicted with the box of their own label.
    #[arg(long = "box", value_name = "MODE", value_parser = ["tight", "relaxed", "none"])]
    pub box_mode: Option<String>,
    /// The class whose box is the prompt [default: the highest class, e.g. the tumour].
    #[arg(long, value_name = "K")]
    pub box_class: Option<u8>,
    /// Relaxed boxes: voxels added on each face, `N` (in-plane; 1 slice in z) or `Z,Y,X`.
    #[arg(long, value_name = "N|Z,Y,X")]
    pub box_margin: Option<String>,
    /// Largest random shift of each box face during training, in model pixels [default: 4].
    #[arg(long, value_name = "PX")]
    pub box_jitter: Option<f32>,
    /// Box the largest connected component of --box-class instead of all of it.
    #[arg(long)]
    pub box_largest_component: bool,
    /// Print the complete configuration these flags give (TOML) and exit; save it, edit it and
    /// pass it back with --config.
    #[arg(long)]
    pub print_config: bool,
    /// The paper's task whose official download --data is: btcv, prostate, endovis18, amos or
    /// msd-pancreas (classes, label mapping, intensity and split follow the task). With
    /// `--backbone tiny` a small random-init model checks the data on a CPU in seconds.
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Prostate: per-site (train and test within a site; all sites pooled without --site) or
    /// cross-site (train on --site, test on the other five sites).
    #[arg(long, value_name = "P", default_value = "per-site")]
    pub protocol: String,
    /// Prostate: the site, RUNMC, BMC, I2CVB, UCL, BIDMC or HK (the paper's sites A-F).
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// AMOS: ct (case ids below 500) or mri.
    #[arg(long, value_name = "M", default_value = "ct")]
    pub modality: String,
    /// AMOS few-shot: train on the first N training cases.
    #[arg(long, value_name = "N")]
    pub shots: Option<usize>,
    /// Start from the trained tensors of another run folder (e.g. a BTCV run for AMOS
    /// few-shot; AMOS labels are then mapped to BTCV's 12 classes).
    #[arg(long, value_name = "RUN")]
    pub init_from: Option<PathBuf>,
    /// Ablation: FacT on the frozen encoder, on or off.
    #[arg(long, value_name = "on|off")]
    pub fact: Option<String>,
    /// Ablation: FacT rank.
    #[arg(long, value_name = "R")]
    pub rank: Option<usize>,
    /// Ablation: 3D adapters none, before (attention), after or both.
    #[arg(long, value_name = "WHERE")]
    pub adapters: Option<String>,
    /// Ablation: train the whole model (encoder included) instead of the parameter-efficient
    /// parts.
    #[arg(long)]
    pub full_ft: bool,
    /// Ablation: no SAM checkpoint (the backbone starts from random weights).
    #[arg(long, conflicts_with = "sam_checkpoint")]
    pub no_sam_weights: bool,
}

impl FinetuneArgs {
    /// The task of `--task`, if given.
    ///
    /// # Errors
    /// An unknown task name.
    pub fn task(&self) -> Result<Option<Task>> {
        Ok(self.task.as_deref().map(str::parse).transpose()?)
    }

    /// The task settings of the flags.
    ///
    /// # Errors
    /// An unknown protocol or modality.
    pub fn task_options(&self) -> Result<TaskOptions> {
        let modality = match self.modality.to_ascii_lowercase().as_str() {
            "ct" => Modality::Ct,
            "mri" | "mr" => Modality::Mri,
            m => return Err(CliError::Usage(format!("--modality {m}: give ct or mri"))),
        };
        Ok(TaskOptions {
            site: self.site.clone(),
            protocol: self.protocol.parse::<Protocol>()?,
            modality,
            shots: self.shots,
            btcv_classes: self.init_from.is_some(),
        })
    }
}

/// The data source of `dir` for `--task` (its official layout), or by layout detection.
fn task_data(task: Option<Task>, dir: &Path, args: &FinetuneArgs) -> Result<DataSource> {
    match task {
        Some(t) => Ok(t.data_source(dir, &args.task_options()?)?),
        None => data_source(dir),
    }
}

/// Applies the ablation flags (`--fact`, `--rank`, `--adapters`, `--full-ft`,
/// `--no-sam-weights`) to `cfg`.
///
/// # Errors
/// Unknown values; `--rank` with FacT off.
pub fn apply_ablations(cfg: &mut FinetuneConfig, args: &FinetuneArgs) -> Result<()> {
    if let Some(f) = &args.fact {
        match f.to_ascii_lowercase().as_str() {
            "on" => {
                if cfg.model.fact.is_none() {
                    cfg.model.fact = Some(FactConfig::ma_sam());
                }
            }
            "off" => cfg.model.fact = None,
            _ => return Err(CliError::Usage(format!("--fact {f}: give on or off"))),
        }
    }
    if let Some(r) = args.rank {
        match cfg.model.fact.take() {
            Some(f) if r > 0 => cfg.model.fact = Some(f.with_rank(r)),
            _ => {
                return Err(CliError::Usage(format!(
                    "--rank {r}: needs FacT on (--fact on) and a rank of at least 1"
                )))
            }
        }
    }
    if let Some(a) = &args.adapters {
        let placement = match a.to_ascii_lowercase().as_str() {
            "none" => None,
            "before" => Some(AdapterPlacement::Before),
            "after" => Some(AdapterPlacement::After),
            "both" => Some(AdapterPlacement::Both),
            _ => {
                return Err(CliError::Usage(format!(
                    "--adapters {a}: give none, before, after or both"
                )))
            }
        };
        match placement {
            None => cfg.model.adapter = None,
            Some(p) => {
                let dim = cfg.model.sam.encoder.embed_dim;
                cfg.model.adapter = Some(
                    cfg.model
                        .adapter
                        .unwrap_or_else(|| Adapter3dConfig::for_dim(dim)),
                );
                cfg.model.adapter_placement = p;
            }
        }
    }
    if args.full_ft {
        cfg.model.finetune = Finetune::Full;
    }
    if args.no_sam_weights {
        cfg.sam_checkpoint = None;
    }
    Ok(())
}

/// Default run folder.
pub const DEFAULT_OUT: &str = "runs/masam";

/// The data source of a folder (BTCV or nnU-Net layout, see [`FinetuneArgs::data`]).
///
/// # Errors
/// [`CliError::NotFound`] / [`CliError::NoInputs`] naming the layouts understood.
pub fn data_source(dir: &Path) -> Result<DataSource> {
    if !dir.is_dir() {
        return Err(CliError::not_found_hint(
            "data folder",
            dir,
            "pass a BTCV folder (img/, label/) or an nnU-Net-style folder (imagesTr/, labelsTr/)",
        ));
    }
    if dir.join("img").is_dir() {
        return Ok(DataSource::Btcv {
            root: dir.to_path_buf(),
        });
    }
    let pairs = |i: &str, l: &str| -> Result<Vec<(PathBuf, PathBuf)>> {
        Ok(
            masam_volume::dataset::folder_pair::cases(dir.join(i), dir.join(l))?
                .into_iter()
                .filter_map(|c| c.label.map(|l| (c.image, l)))
                .collect(),
        )
    };
    if dir.join("imagesTr").is_dir() && dir.join("labelsTr").is_dir() {
        let train = pairs("imagesTr", "labelsTr")?;
        let test = if dir.join("imagesTs").is_dir() && dir.join("labelsTs").is_dir() {
            pairs("imagesTs", "labelsTs")?
        } else {
            vec![]
        };
        return Ok(DataSource::Files { train, test });
    }
    Err(CliError::NoInputs {
        what: "training data layout",
        dir: dir.to_path_buf(),
        hint: "; expected a BTCV folder (img/imgXXXX.nii.gz + label/labelXXXX.nii.gz) or \
               imagesTr/ + labelsTr/ with same-named NIfTI files"
            .into(),
    })
}

/// The run configuration the flags describe: `--config` (or, with `--resume`, the run folder's
/// `config.toml`), else the paper's recipe with `--data` or the phantom default; then every
/// flag given overrides its value.
///
/// # Errors
/// Missing files, unreadable TOML, an unknown backbone, or `--data` without SAM weights.
pub fn build_config(args: &FinetuneArgs) -> Result<FinetuneConfig> {
    let seed = args.seed.unwrap_or(1234);
    let out = args.out.clone();
    let resumed_cfg = match (&args.config, args.resume, &out) {
        (None, true, Some(o)) if o.join(run_dir::CONFIG_FILE).is_file() => {
            Some(o.join(run_dir::CONFIG_FILE))
        }
        _ => None,
    };
    let from_file = args.config.clone().or(resumed_cfg);
    let task = args.task()?;
    if let (Some(t), None, None) = (task, &args.data, &from_file) {
        return Err(CliError::Usage(format!(
            "--task {t} needs --data <DIR>: {}",
            t.layout()
        )));
    }
    let mut cfg = match &from_file {
        Some(p) => {
            if !p.is_file() {
                return Err(CliError::not_found_hint(
                    "configuration file",
                    p,
                    "write a starting point with `masam finetune --print-config > run.toml`",
                ));
            }
            run_dir::load_config(p)?
        }
        None => match &args.data {
            Some(dir) if task.is_some() => {
                let t = task.unwrap_or(Task::Btcv);
                let backbone = args.backbone.as_deref().unwrap_or("vit_b");
                let tiny = backbone.eq_ignore_ascii_case("tiny");
                let mut cfg = t
                    .config(
                        task_data(task, dir, args)?,
                        backbone,
                        args.steps.unwrap_or(if tiny { 3 } else { 30_000 }),
                        out.clone().unwrap_or_else(|| DEFAULT_OUT.into()),
                    )?
                    .with_seed(seed);
                if args.no_sam_weights {
                    cfg.model.finetune = Finetune::Full;
                }
                if !tiny
                    && !args.no_sam_weights
                    && !args.full_ft
                    && args.sam_checkpoint.is_none()
                    && args.init_from.is_none()
                {
                    return Err(CliError::Usage(format!(
                        "--task {t} trains the paper's recipe on a frozen SAM backbone: pass \
                         --sam-checkpoint sam_vit_b_01ec64.pth (the official SAM ViT-B weights); \
                         to check the data on a CPU first, use --backbone tiny --steps 3"
                    )));
                }
                cfg
            }
            Some(dir) => {
                let backbone =
                    ImageEncoderConfig::preset(args.backbone.as_deref().unwrap_or("vit_b"))?;
                let ckpt = args.sam_checkpoint.clone().ok_or_else(|| {
                    CliError::Usage(
                        "--data trains the paper's recipe on a frozen SAM backbone: pass \
                         --sam-checkpoint sam_vit_b_01ec64.pth (the official SAM ViT-B weights), \
                         or start from `masam finetune --print-config` and set \
                         model.finetune = \"full\" to train a random backbone end to end"
                            .into(),
                    )
                })?;
                FinetuneConfig::paper(
                    data_source(dir)?,
                    backbone,
                    args.classes.unwrap_or(12),
                    args.steps.unwrap_or(30_000),
                    out.clone().unwrap_or_else(|| DEFAULT_OUT.into()),
                )
                .with_sam_checkpoint(ckpt)
                .with_seed(seed)
            }
            None => FinetuneConfig::phantom_default(
                args.steps.unwrap_or(5_000),
                seed,
                out.clone().unwrap_or_else(|| DEFAULT_OUT.into()),
            ),
        },
    };
    if from_file.is_some() {
        if let Some(dir) = &args.data {
            cfg.data = task_data(task, dir, args)?;
        }
        if let Some(t) = task {
            let modality = args.task_options()?.modality;
            cfg.intensity = t.intensity(modality);
            let k = match cfg.data {
                DataSource::Amos {
                    btcv_classes: true, ..
                } => masam_app::task::BTCV_CLASSES.len(),
                _ => t.num_classes(),
            };
            cfg.model.sam.decoder.num_multimask_outputs = k;
        }
        if let Some(k) = args.classes {
            cfg.model.sam.decoder.num_multimask_outputs = k;
        }
        if let Some(s) = args.steps {
            cfg.trainer.steps = s;
        }
        if let Some(s) = args.seed {
            cfg.trainer.seed = s;
        }
        if let Some(o) = &out {
            cfg.out_dir = o.clone();
        }
    }
    if args.phantom {
        cfg.data = DataSource::phantom_default();
    }
    if let Some(d) = &args.device {
        masam_app::device::parse_device(d)?;
        cfg.device = d.clone();
    }
    if let Some(p) = &args.precision {
        cfg.trainer.precision = p
            .parse()
            .map_err(|e: masam_adapter::train::TrainError| CliError::Usage(e.to_string()))?;
    }
    let keep_backbone = task.is_some() && from_file.is_none();
    if let Some(name) = args.backbone.as_ref().filter(|_| !keep_backbone) {
        // another backbone keeps every MA-SAM setting of the configuration (FacT, adapters,
        // decoder, slices, what is trained)
        cfg.model = cfg.model.with_backbone(ImageEncoderConfig::preset(name)?);
    }
    if let Some(p) = &args.sam_checkpoint {
        cfg.sam_checkpoint = Some(p.clone());
    }
    if let Some(m) = args.minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(CliError::Usage(format!(
                "--minutes {m}: give a positive number of minutes"
            )));
        }
        cfg.time_budget_s = Some(m * 60.0);
    }
    cfg.resume = args.resume;
    if args.deterministic {
        cfg.trainer.deterministic = true;
        cfg.time_budget_s = None;
    }
    if args.checkpoint_blocks {
        cfg.trainer.checkpoint_blocks = true;
    }
    if let Some(run) = &args.init_from {
        // the model of the run we start from (its classes included), trained further here
        let src = run_dir::load_config(run.join(run_dir::CONFIG_FILE))?;
        cfg.model = src.model;
        if cfg.sam_checkpoint.is_none() {
            cfg.sam_checkpoint = src.sam_checkpoint;
        }
    }
    apply_ablations(&mut cfg, args)?;
    if let Some(d) = &args.decoder {
        let kind: masam_adapter::sam::mask_decoder::DecoderKind = d
            .parse()
            .map_err(|e: masam_adapter::sam::Error| CliError::Usage(e.to_string()))?;
        cfg.model = cfg.model.with_decoder(kind);
    }
    apply_box_flags(args, &mut cfg)?;
    if let Some(p) = &cfg.sam_checkpoint {
        if !p.is_file() {
            return Err(CliError::not_found_hint(
                "SAM checkpoint",
                p,
                "download the official weights (sam_vit_b_01ec64.pth for ViT-B) from the \
                 segment-anything release and pass their path with --sam-checkpoint",
            ));
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Parses `--box-margin`: `N` (in-plane N, 1 slice) or `Z,Y,X`.
pub fn parse_margin(text: &str) -> Result<[usize; 3]> {
    let bad = || {
        CliError::Usage(format!(
            "--box-margin {text}: give N (voxels in-plane) or Z,Y,X (non-negative integers)"
        ))
    };
    let v: Vec<usize> = text
        .split(',')
        .map(|t| t.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    match v[..] {
        [n] => Ok([1, n, n]),
        [z, y, x] => Ok([z, y, x]),
        _ => Err(bad()),
    }
}

/// Applies `--box`, `--box-class`, `--box-margin` and `--box-jitter` to `cfg.box_prompt`.
fn apply_box_flags(args: &FinetuneArgs, cfg: &mut FinetuneConfig) -> Result<()> {
    use masam_adapter::volume::boxes::{BoxMode, BoxPromptConfig};
    let k = cfg.model.num_classes();
    match args.box_mode.as_deref() {
        Some("none") => cfg.box_prompt = None,
        Some(m) => {
            let mut bp = cfg.box_prompt.unwrap_or(BoxPromptConfig {
                jitter: 4.0,
                ..BoxPromptConfig::tight(k.min(255) as u8)
            });
            bp.mode = if m == "relaxed" {
                BoxMode::Relaxed
            } else {
                BoxMode::Tight
            };
            cfg.box_prompt = Some(bp);
        }
        None => {}
    }
    let tuning = args.box_class.is_some()
        || args.box_margin.is_some()
        || args.box_jitter.is_some()
        || args.box_largest_component;
    let Some(bp) = cfg.box_prompt.as_mut() else {
        if tuning {
            return Err(CliError::Usage(
                "--box-class/--box-margin/--box-jitter need box prompts: add --box tight or \
                 --box relaxed"
                    .into(),
            ));
        }
        return Ok(());
    };
    if let Some(c) = args.box_class {
        bp.class = c;
    }
    if let Some(m) = &args.box_margin {
        bp.margin_zyx = parse_margin(m)?;
    }
    if let Some(j) = args.box_jitter {
        bp.jitter = j;
    }
    if args.box_largest_component {
        bp.largest_component = true;
    }
    if bp.class == 0 || bp.class as usize > k {
        return Err(CliError::Usage(format!(
            "--box-class {}: the model has foreground classes 1..={k}",
            bp.class
        )));
    }
    if !(bp.jitter.is_finite() && bp.jitter >= 0.0) {
        return Err(CliError::Usage(format!(
            "--box-jitter {}: give a number of pixels >= 0",
            bp.jitter
        )));
    }
    Ok(())
}

/// Runs `masam finetune`.
///
/// # Errors
/// Configuration errors (see [`build_config`]), a run folder that already holds a run without
/// `--resume`, and any failure of the run itself.
pub fn run(args: &FinetuneArgs) -> Result<()> {
    let cfg = build_config(args)?;
    if args.print_config {
        let text = toml::to_string_pretty(&cfg)
            .map_err(|e| CliError::Usage(format!("cannot print the configuration: {e}")))?;
        println!(
            "# masam finetune configuration (FinetuneConfig). Edit it, then run\n\
             #   masam finetune --config <this file>\n\
             # Flags given with --config override these values. Sections: [model] (MA-SAM),\n\
             # [trainer] (optimiser, schedule, loss, seed), [data] (kind = \"phantom\", \"btcv\",\n\
             # \"prostate\", \"amos\", \"msd_pancreas\", \"endovis18\" or \"files\"), [intensity]\n\
             # (the window and normalisation of every stack).\n"
        );
        print!("{text}");
        return Ok(());
    }
    // a process started by a multi-GPU launch (ours or a scheduler's) is one rank of it
    let rank_env = DistEnv::from_env()
        .map_err(|e| CliError::Usage(format!("multi-GPU launch variables: {e}")))?;
    if let Some(env) = rank_env {
        return run_rank(args, cfg, &env);
    }
    let state = cfg.out_dir.join("train_state.safetensors");
    if state.exists() && !cfg.resume {
        return Err(CliError::Usage(format!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            cfg.out_dir.display()
        )));
    }
    if cfg.data.is_phantom() {
        tracing::warn!("training on the SYNTHETIC abdomen phantom (not real CT)");
    }
    if cfg.model.finetune == Finetune::ParameterEfficient && cfg.sam_checkpoint.is_none() {
        tracing::warn!(
            "no SAM checkpoint: the frozen encoder is RANDOM (drawn from the seed); pass \
             --sam-checkpoint or set model.finetune = \"full\""
        );
    }
    tracing::info!(
        out = %cfg.out_dir.display(),
        steps = cfg.trainer.steps,
        budget_s = ?cfg.time_budget_s,
        img = cfg.model.sam.encoder.img_size,
        classes = cfg.model.num_classes(),
        "loading data and building the model"
    );
    if let Some(n) = args.gpus {
        if !launch::NCCL_AVAILABLE {
            return Err(CliError::Usage(
                "--gpus needs a masam built with NCCL: `cargo build --release -p masam-cli \
                 --features nccl` (CUDA toolkit and libnccl); --ranks N runs CPU ranks"
                    .into(),
            ));
        }
        if n == 0 {
            return Err(CliError::Usage("--gpus must be at least 1".into()));
        }
        std::fs::create_dir_all(&cfg.out_dir).map_err(|e| {
            CliError::Usage(format!("cannot create {}: {e}", cfg.out_dir.display()))
        })?;
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let rendezvous = cfg.out_dir.join(format!(".nccl-id-{}", std::process::id()));
        launch::launch_local(n, &args, &rendezvous)?;
        println!(
            "{n} ranks finished; predict with: masam predict --run {} --input <volume> --output <file>",
            cfg.out_dir.display()
        );
        return Ok(());
    }
    let pb = progress::bar(cfg.trainer.steps, "steps");
    let init = args
        .init_from
        .as_ref()
        .map(|r| r.join(run_dir::WEIGHTS_FILE))
        .filter(|_| !cfg.resume);
    if let Some(w) = &init {
        if !w.is_file() {
            return Err(CliError::not_found_hint(
                "weights of --init-from",
                w,
                "pass the --out folder of a finished `masam finetune` run",
            ));
        }
    }
    let on_step = |s: &masam_adapter::StepStats| {
        pb.set_position(s.step + 1);
        pb.set_message(format!(
            "loss {:.4} (ce {:.4}, dice {:.4})",
            s.loss, s.ce, s.dice
        ));
        tracing::debug!(
            step = s.step,
            lr = s.lr,
            loss = s.loss,
            ce = s.ce,
            dice = s.dice,
            "step"
        );
    };
    let (model, report) = match args.ranks {
        Some(n) if n != 1 => parallel::run_threads(&cfg, init.as_deref(), n, on_step)?,
        _ => finetune::run_from(&cfg, init.as_deref(), on_step)?,
    };
    pb.finish_and_clear();
    println!("{}", report.summary(&model, &cfg.out_dir));
    println!(
        "predict with: masam predict --run {} --input <volume> --output <file>",
        cfg.out_dir.display()
    );
    Ok(())
}

/// This process as rank `env.rank` of a multi-GPU run: NCCL on GPU `env.local_rank`; rank 0
/// writes the run folder and prints the summary.
fn run_rank(args: &FinetuneArgs, mut cfg: FinetuneConfig, env: &DistEnv) -> Result<()> {
    cfg.device = format!("cuda:{}", env.local_rank);
    if cfg.out_dir.join(finetune::TRAIN_STATE_FILE).exists() && !cfg.resume {
        return Err(CliError::Usage(format!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            cfg.out_dir.display()
        )));
    }
    let init = args
        .init_from
        .as_ref()
        .map(|r| r.join(run_dir::WEIGHTS_FILE))
        .filter(|_| !cfg.resume);
    let comm = launch::nccl_communicator(env)?;
    let root = env.rank == 0;
    let pb = if root {
        progress::bar(cfg.trainer.steps, "steps")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (model, report) = finetune::run_ranked(&cfg, init.as_deref(), comm, |s| {
        pb.set_position(s.step + 1);
        pb.set_message(format!("loss {:.4}", s.loss));
    })?;
    pb.finish_and_clear();
    if root {
        println!("{}", report.summary(&model, &cfg.out_dir));
    }
    Ok(())
}
