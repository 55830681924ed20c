//! A whole fine-tuning run as one call: data, model, training with a step and time budget,
//! checkpoints, held-out evaluation, and the files a researcher looks at, all in the run folder.

use std::sync::Arc;
use std::time::Instant;

use masam_adapter::data::{BatchLoader, InMemoryStacks, Shard, StackSource};
use masam_adapter::dist::{buckets, Communicator, SingleProcess};
use masam_adapter::evaluate::evaluate_with_box_prompts;
use masam_adapter::metrics::MetricReport;
use masam_adapter::volume::augment::{Recipe, RecipeConfig};
use masam_adapter::volume::transforms::SliceStack;
use masam_adapter::{MaSam, SamCheckpoint, StepStats, Trainer};

use crate::error::io_at;
use crate::loss_log::LossLog;
use crate::{AppError, FinetuneConfig, Result};

/// File name of the resumable training state inside a run folder.
pub const TRAIN_STATE_FILE: &str = "train_state.safetensors";

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

impl FinetuneReport {
    /// What the binaries print at the end of a run: steps, trainable parameters, time, the
    /// held-out Dice table and its mean.
    pub fn summary(&self, model: &MaSam, run_dir: &std::path::Path) -> String {
        let n_params: usize = model
            .trainable_vars()
            .values()
            .map(|v| v.elem_count())
            .sum();
        let mut s = format!(
            "trained {} steps ({} trainable parameters) in {:.0} s; run folder {}\n",
            self.steps,
            n_params,
            self.train_seconds,
            run_dir.display()
        );
        if let Some(last) = self.history.last() {
            s.push_str(&format!(
                "final loss {:.4} (ce {:.4}, dice {:.4})\n",
                last.loss, last.ce, last.dice
            ));
        }
        match &self.dice {
            Some(d) => s.push_str(&format!(
                "{d}\nmean Dice over {} classes on {} held-out volumes: {:.4}",
                d.class_means().len(),
                d.cases.len(),
                d.mean()
            )),
            None => s.push_str("no held-out volumes: no Dice table"),
        }
        s
    }
}

/// The untrained model of a run: from the configured SAM checkpoint, or freshly initialised
/// from the run's seed, computing in the run's precision (`trainer.precision`).
pub fn initial_model(cfg: &FinetuneConfig) -> Result<MaSam> {
    let dev = crate::device::parse_device(&cfg.device)?;
    let seed = cfg.trainer.seed;
    let model = match &cfg.sam_checkpoint {
        Some(p) => MaSam::from_sam_checkpoint(&cfg.model, &SamCheckpoint::load(p)?, seed, &dev)?,
        None => MaSam::random(&cfg.model, seed, &dev)?,
    };
    Ok(model.with_precision(cfg.trainer.precision)?)
}

/// What a deterministic run (`cfg.trainer.deterministic`) cannot have: a time budget (where it
/// stops would depend on the machine's speed) and a device other than the CPU (CUDA kernels
/// accumulate in an order that varies from run to run).
///
/// # Errors
/// [`AppError::Config`] naming the setting.
pub fn check_deterministic(cfg: &FinetuneConfig) -> Result<()> {
    if !cfg.trainer.deterministic {
        return Ok(());
    }
    if let Some(b) = cfg.time_budget_s {
        return Err(AppError::Config(format!(
            "a deterministic run trains a fixed number of steps, but the configuration has a \
             time budget of {b} s: remove `time_budget_s` (the CLI: no --minutes)"
        )));
    }
    if !crate::device::parse_device(&cfg.device)?.is_cpu() {
        return Err(AppError::Config(format!(
            "a deterministic run is guaranteed on the CPU only, not on `{}`",
            cfg.device
        )));
    }
    Ok(())
}

/// Runs training then held-out evaluation; `on_step` sees every step (progress display).
///
/// The run folder `cfg.out_dir` receives `config.toml` first, then `train_state.safetensors`
/// every `checkpoint_every` steps (with `resume`, training continues from it),
/// `model.safetensors` (and `model_best.safetensors` with periodic evaluation), `loss.csv`,
/// `metrics.csv`/`metrics.json` and the figures of [`crate::figures::write_figures`].
pub fn run(
    cfg: &FinetuneConfig,
    on_step: impl FnMut(&StepStats),
) -> Result<(MaSam, FinetuneReport)> {
    run_from(cfg, None, on_step)
}

/// [`run`], starting from the trained tensors of `init` (a `model.safetensors` of a run with the
/// same model configuration, e.g. a BTCV run fine-tuned further on a few AMOS cases) instead of
/// the configured initialisation. The file's path is written to the run folder as
/// `init_from.txt`.
pub fn run_from(
    cfg: &FinetuneConfig,
    init: Option<&std::path::Path>,
    on_step: impl FnMut(&StepStats),
) -> Result<(MaSam, FinetuneReport)> {
    run_ranked(cfg, init, Arc::new(SingleProcess), on_step)
}

/// [`run_from`] as one rank of a data-parallel run over `comm` (see
/// [`masam_adapter::Trainer::set_communicator`]).
///
/// Every rank builds the model from the configuration (the frozen weights must come out the
/// same: the same checkpoint or seed), receives rank 0's trainable weights, resumes from the
/// run folder's state when `cfg.resume` is set, and loads its own share of each global batch
/// of `cfg.trainer.batch × world size` stacks ([`BatchLoader::spawn_sharded`]); the gradients
/// are averaged in buckets of `buckets::DEFAULT_BUCKET_BYTES`. Only rank 0 writes to the run
/// folder (configuration, `loss.csv`, checkpoints, weights, evaluation, figures); the other
/// ranks return their model (the same weights) with a report without Dice. With a time budget,
/// the ranks agree at every step on whether to go on (one small all-reduce).
pub fn run_ranked(
    cfg: &FinetuneConfig,
    init: Option<&std::path::Path>,
    comm: Arc<dyn Communicator>,
    mut on_step: impl FnMut(&StepStats),
) -> Result<(MaSam, FinetuneReport)> {
    cfg.validate()?;
    crate::runtime::tune_allocator();
    check_deterministic(cfg)?;
    let root = comm.is_root();
    let world = comm.world_size();
    if root {
        std::fs::create_dir_all(&cfg.out_dir).map_err(io_at(&cfg.out_dir))?;
        let config_path = cfg.out_dir.join(crate::run_dir::CONFIG_FILE);
        masam_fs::atomic_write_bytes(&config_path, toml::to_string_pretty(cfg)?.as_bytes())?;
    }

    let model = initial_model(cfg)?;
    if let Some(w) = init {
        model.load_trainable(w)?;
        if root {
            let note = cfg.out_dir.join("init_from.txt");
            std::fs::write(&note, format!("{}\n", w.display())).map_err(io_at(&note))?;
        }
    }
    let scfg = cfg.stack_config();
    let (source, data, videos): (Arc<dyn StackSource>, _, _) = match &cfg.data {
        crate::DataSource::Endovis18 { root } => {
            let (train, test) = crate::video::endovis_split(root)?;
            let src = crate::video::VideoStacks::new(train, SliceStack::new(scfg)?)?;
            let names = crate::Task::Endovis18.class_names();
            let empty = crate::data_source::LoadedData {
                train: vec![],
                test: vec![],
                class_names: names,
            };
            (Arc::new(src), empty, test)
        }
        _ => {
            let mut data = prepared_data(cfg)?;
            let recipe = if cfg.augment {
                Some(Recipe::new(RecipeConfig::reference(), cfg.trainer.seed)?)
            } else {
                None
            };
            let train = std::mem::take(&mut data.train);
            let mut src = InMemoryStacks::new(train, SliceStack::new(scfg)?, recipe)?;
            if let Some(bp) = cfg.box_prompt {
                src = src.with_box_prompts(bp, cfg.trainer.seed)?;
            }
            (Arc::new(src), data, vec![])
        }
    };

    let mut trainer = Trainer::new(&model, cfg.trainer.clone())?;
    let ckpt = cfg.out_dir.join(TRAIN_STATE_FILE);
    if cfg.resume && ckpt.exists() {
        trainer.resume(&ckpt)?;
    }
    // the schedule's horizon: fitted to the budget as the steps are timed; a resumed run starts
    // from the last fit
    let mut horizon = match cfg.time_budget_s.filter(|_| cfg.fit_schedule_to_budget) {
        None => None,
        Some(budget) => {
            if cfg.resume {
                if let Some(total) = crate::schedule_horizon::read_horizon(&cfg.out_dir)? {
                    trainer.set_schedule(cfg.trainer.schedule.ending_at(total))?;
                }
            }
            Some(crate::schedule_horizon::BudgetHorizon::new(
                budget,
                cfg.trainer.steps,
            ))
        }
    };
    trainer.set_communicator(comm.clone(), buckets::DEFAULT_BUCKET_BYTES)?;
    let shard = Shard {
        rank: comm.rank(),
        world_size: world,
    };
    let mut loader = BatchLoader::spawn_sharded(
        source,
        cfg.trainer.batch,
        cfg.trainer.seed,
        trainer.current_step() * cfg.trainer.accumulation as u64,
        4,
        cfg.sampling,
        shard,
    )?;
    let mut loss_log = if root {
        Some(LossLog::open(
            cfg.out_dir.join("loss.csv"),
            trainer.current_step(),
        )?)
    } else {
        None
    };
    let mut last_checkpoint = cfg
        .resume
        .then(|| trainer.current_step())
        .filter(|&s| s > 0);
    let test = data.test;
    let names = data.class_names;
    let start = Instant::now();
    let mut history = vec![];
    let mut evals: Vec<(u64, f64)> = vec![];
    let mut best: Option<f64> = None;
    let in_budget = |start: &Instant| -> Result<bool> {
        let Some(b) = cfg.time_budget_s else {
            return Ok(true);
        };
        let over = start.elapsed().as_secs_f64() >= b;
        if world == 1 {
            return Ok(!over);
        }
        // every rank stops at the same step: stop when any rank is over its budget
        let flag = masam_adapter::candle::Tensor::new(&[over as u8 as f32], model.device())?;
        let any = comm
            .all_reduce_sum(&flag)
            .map_err(masam_adapter::Error::from)?
            .to_vec1::<f32>()?;
        Ok(any[0] == 0.0)
    };
    while trainer.current_step() < cfg.trainer.steps && in_budget(&start)? {
        let micro: Vec<_> = (0..cfg.trainer.accumulation)
            .map(|_| loader.next_batch().map(|(_, b)| b))
            .collect::<masam_adapter::Result<_>>()?;
        let s = match trainer.step(&micro) {
            Ok(s) => s,
            Err(source @ masam_adapter::Error::NonFinite { .. }) => {
                if let Some(log) = loss_log.as_mut() {
                    log.sync()?;
                }
                return Err(AppError::Diverged {
                    source: Box::new(source),
                    checkpoint: last_checkpoint.map(|step| (ckpt.clone(), step)),
                });
            }
            Err(e) => return Err(e.into()),
        };
        on_step(&s);
        history.push(s);
        let step = trainer.current_step();
        if let Some(total) = horizon
            .as_mut()
            .and_then(|h| h.observe(step, start.elapsed().as_secs_f64()))
        {
            // every rank decays over rank 0's measurement
            let t = masam_adapter::candle::Tensor::new(&[total as f32], model.device())?;
            let total = comm
                .broadcast(&t, 0)
                .map_err(masam_adapter::Error::from)?
                .to_vec1::<f32>()?[0]
                .round() as u64;
            trainer.set_schedule(cfg.trainer.schedule.ending_at(total))?;
            if root {
                crate::schedule_horizon::write_horizon(&cfg.out_dir, total)?;
            }
        }
        let Some(log) = loss_log.as_mut() else {
            continue; // the other ranks write nothing
        };
        log.append(&s)?;
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 {
            trainer.save(&ckpt)?;
            log.sync()?;
            last_checkpoint = Some(step);
        }
        if cfg.eval_every > 0 && !test.is_empty() && step % cfg.eval_every == 0 {
            let bp = cfg.box_prompt.as_ref();
            let mean = evaluate_with_box_prompts(&model, &test, &scfg, &names, cfg.eval_batch, bp)?
                .0
                .mean();
            evals.push((step, mean));
            if best.is_none_or(|b| mean > b) {
                best = Some(mean);
                model.save_trainable(cfg.out_dir.join("model_best.safetensors"))?;
            }
        }
    }
    drop(loader);
    let train_seconds = start.elapsed().as_secs_f64();
    let Some(loss_log) = loss_log else {
        let steps = trainer.current_step();
        return Ok((
            model,
            FinetuneReport {
                steps,
                train_seconds,
                history,
                dice: None,
                evaluations: evals,
            },
        ));
    };
    trainer.save(&ckpt)?;
    model.save_trainable(cfg.out_dir.join(crate::run_dir::WEIGHTS_FILE))?;
    loss_log.sync()?;
    // the whole history, earlier processes of a resumed run included
    let all_steps = crate::loss_log::read_losses(loss_log.path())?;
    drop(loss_log);

    if !videos.is_empty() {
        write_video_scores(cfg, &model, &videos, &names)?;
    }
    let (dice, preds) = if test.is_empty() {
        (None, vec![])
    } else {
        let (report, preds) = evaluate_with_box_prompts(
            &model,
            &test,
            &scfg,
            &names,
            cfg.eval_batch,
            cfg.box_prompt.as_ref(),
        )?;
        report.write_csv(cfg.out_dir.join("metrics.csv"))?;
        report.write_json(cfg.out_dir.join("metrics.json"))?;
        (Some(report), preds)
    };
    let window = (
        cfg.intensity.window.a_min as f32,
        cfg.intensity.window.a_max as f32,
    );
    crate::figures::write_figures(
        &cfg.out_dir,
        &crate::figures::RunHistory {
            steps: &all_steps,
            evaluations: &evals,
        },
        &crate::figures::HeldOut {
            cases: &test,
            predictions: &preds,
            class_names: &names,
            window,
        },
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

/// The run's volumes as the model sees them before stacks are cut: [`DataSource::load`](crate::DataSource::load), then the volume-level intensity step of the run
/// ([`crate::task::prepare_image`]: the MRI percentile normalisation; nothing for CT), the
/// same step prediction applies.
///
/// # Errors
/// See [`crate::DataSource::load`].
pub fn prepared_data(cfg: &FinetuneConfig) -> Result<crate::data_source::LoadedData> {
    let mut data = cfg.data.load()?;
    for v in data.train.iter_mut().chain(data.test.iter_mut()) {
        crate::task::prepare_image(&cfg.intensity, &mut v.image);
    }
    Ok(data)
}

/// Scores the held-out videos (per-class Dice and IoU per sequence) into
/// `metrics_video.csv`.
fn write_video_scores(
    cfg: &FinetuneConfig,
    model: &MaSam,
    videos: &[crate::video::Video],
    names: &[String],
) -> Result<()> {
    let dev = crate::device::parse_device(&cfg.device)?;
    let stack = SliceStack::new(cfg.stack_config())?;
    let mut rows = vec![];
    for v in videos {
        let Some(gt) = &v.labels else { continue };
        let pred = crate::video::predict_frames(model, &v.frames, &stack, cfg.eval_batch, &dev)?;
        let mut s = crate::video::VideoScores::new(names.len());
        for (p, g) in pred.iter().zip(gt) {
            s.add(p, g)?;
        }
        rows.push((v.name.clone(), s));
    }
    let path = cfg.out_dir.join("metrics_video.csv");
    Ok(masam_fs::atomic_write_bytes(
        &path,
        crate::video::scores_csv(&rows, names).as_bytes(),
    )?)
}
