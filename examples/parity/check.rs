//! The parity check behind the `parity` example, shared with `tests/parity_example.rs`: reads a
//! reference fixture folder (the `tests/fixtures/reference-tiny` layout and `config.json` schema,
//! any configuration: every shape comes from the folder) and compares every file the reference
//! wrote, one group per file (or per model variant), with the fixture README's tolerances.
//!
//! A group whose files are absent is `missing` (not a failure unless `strict`); a group whose
//! files cannot be read or whose computation fails is `error` (a failure); otherwise `pass` or
//! `fail` from its checks. Every tensor of a compared file gets a check, so a key that masam does
//! not compute shows up as a failed check rather than being skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use masam_adapter::checkpoint::reference_key;
use masam_adapter::conv3d::{conv3d_op, Conv3dPadding};
use masam_adapter::{MaSam, MaSamConfig, Mode};
use masam_app::reference_config::ReferenceConfig;
use masam_metrics::{
    compute_asd, compute_dice, compute_hd95, compute_surface_dice_at, foreground_mask, EmptyPolicy,
};
use masam_sam::{ForwardContext, Prompt, Sam, SamCheckpoint};
use masam_train::{AdamW, AdamWConfig, DiceCeLoss, DiceCeLossConfig};
use ndarray::Array3;
use serde::Serialize;

/// Max relative error allowed for forward tensors (fixture README).
pub const FORWARD_TOL: f64 = 1e-4;
/// Max relative error allowed for gradients (fixture README).
pub const GRAD_TOL: f64 = 1e-3;
/// Max absolute error allowed for the AdamW losses (fixture README).
pub const ADAMW_TOL: f64 = 1e-3;
/// Max relative error allowed for the f64 metrics (medpy / DeepMind values).
pub const METRICS_TOL: f64 = 1e-6;

/// Outcome of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every check within tolerance.
    Pass,
    /// At least one check out of tolerance.
    Fail,
    /// A file the group needs is not in the folder.
    Missing,
    /// A file could not be read, or the computation failed.
    Error,
}

/// One compared tensor.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The tensor's key in its fixture file (or a derived name such as `round_trip`).
    pub name: String,
    /// max |a − b| (null in JSON = not computed, or a shape mismatch).
    pub max_abs: f64,
    /// max |a − b| / (max |b| + 1e-6).
    pub max_rel: f64,
    /// Which of the two is held against the tolerance: `max_rel` or `max_abs`.
    pub metric: &'static str,
    /// The largest error that passes.
    pub tolerance: f64,
    /// The measured error is within the tolerance.
    pub pass: bool,
}

/// One group: a fixture file (or a model variant on one), its checks and its worst errors.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// `config`, `sam_base`, `masam_adapter`, `converted_encoder`, `plain_outputs`, `outputs`,
    /// `outputs_merged`, `grads`, `bbox_outputs`, `bbox_outputs_merged`, `adamw`, `loss`,
    /// `conv3d` or `metrics`.
    pub name: &'static str,
    /// The fixture files it reads.
    pub files: Vec<&'static str>,
    /// Pass, fail, missing or error.
    pub status: Status,
    /// Largest `max_abs` over its checks.
    pub max_abs: f64,
    /// Largest `max_rel` over its checks.
    pub max_rel: f64,
    /// Why it is missing or in error, or what it compared.
    pub note: Option<String>,
    /// Every compared tensor.
    pub checks: Vec<Check>,
}

/// Parameters with a non-zero gradient against the config's `trainable_keys`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainableSet {
    /// The two sets are equal.
    pub pass: bool,
    /// Trainable keys without a non-zero gradient.
    pub missing: Vec<String>,
    /// Parameters with a non-zero gradient that are not in `trainable_keys`.
    pub unexpected: Vec<String>,
}

/// The whole parity report, printed as one JSON object.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The fixture folder.
    pub fixture: PathBuf,
    /// No group failed or was in error (and, when strict, none was missing).
    pub pass: bool,
    /// No group was missing.
    pub complete: bool,
    /// Every group, in a fixed order.
    pub groups: Vec<Group>,
    /// The gradient-support check (absent when the gradients could not be computed).
    pub trainable_set: Option<TrainableSet>,
}

impl Report {
    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Every check of every group, with its group's name.
    pub fn checks(&self) -> impl Iterator<Item = (&'static str, &Check)> {
        self.groups
            .iter()
            .flat_map(|g| g.checks.iter().map(move |c| (g.name, c)))
    }
}

fn max_abs_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

/// Compares `got` with `want` in f64; a missing tensor or a shape mismatch is an infinite error.
/// Non-finite values count as equal when both sides hold the same one.
fn compare(
    name: &str,
    got: Option<&Tensor>,
    want: &Tensor,
    metric: &'static str,
    tol: f64,
) -> Check {
    let errors = || -> Result<(f64, f64)> {
        let g = got.ok_or_else(|| anyhow!("not computed"))?;
        if g.dims() != want.dims() {
            bail!("shape {:?} != {:?}", g.dims(), want.dims());
        }
        let (g, w) = (
            g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
            want.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
        );
        let mut worst = 0f64;
        let mut scale = 0f64;
        for (a, b) in g.iter().zip(&w) {
            let d = if a == b { 0.0 } else { (a - b).abs() };
            worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
            if b.is_finite() {
                scale = scale.max(b.abs());
            }
        }
        Ok((worst, worst / (scale + 1e-6)))
    };
    let (max_abs, max_rel) = errors().unwrap_or((f64::INFINITY, f64::INFINITY));
    let error = if metric == "max_abs" {
        max_abs
    } else {
        max_rel
    };
    Check {
        name: name.into(),
        max_abs,
        max_rel,
        metric,
        tolerance: tol,
        pass: error <= tol,
    }
}

impl Group {
    fn new(name: &'static str, files: &[&'static str]) -> Self {
        Group {
            name,
            files: files.to_vec(),
            status: Status::Pass,
            max_abs: 0.0,
            max_rel: 0.0,
            note: None,
            checks: vec![],
        }
    }

    fn missing(name: &'static str, files: &[&'static str], why: String) -> Self {
        let mut g = Group::new(name, files);
        g.status = Status::Missing;
        g.note = Some(why);
        g
    }

    /// The group from a computation that may fail: `Err` → `error` with the message.
    fn from(name: &'static str, files: &[&'static str], r: Result<Vec<Check>>) -> Self {
        let mut g = Group::new(name, files);
        match r {
            Ok(checks) => {
                for c in &checks {
                    g.max_abs = g.max_abs.max(c.max_abs);
                    g.max_rel = g.max_rel.max(c.max_rel);
                }
                g.status = if checks.iter().all(|c| c.pass) {
                    Status::Pass
                } else {
                    Status::Fail
                };
                g.checks = checks;
            }
            Err(e) => {
                g.status = Status::Error;
                g.note = Some(format!("{e:#}"));
            }
        }
        g
    }

    fn with_note(mut self, note: &str) -> Self {
        if self.note.is_none() {
            self.note = Some(note.into());
        }
        self
    }
}

/// Runs `f`: a fallible block whose error becomes a group's `error` status.
fn attempt<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    f()
}

fn load(dir: &Path, name: &str) -> Result<HashMap<String, Tensor>> {
    let p = dir.join(name);
    candle_core::safetensors::load(&p, &Device::Cpu)
        .with_context(|| format!("reading {}", p.display()))
}

fn get<'a>(m: &'a HashMap<String, Tensor>, file: &str, key: &str) -> Result<&'a Tensor> {
    m.get(key).with_context(|| format!("{file} has no `{key}`"))
}

fn sorted(m: &HashMap<String, Tensor>) -> BTreeMap<&String, &Tensor> {
    m.iter().collect()
}

/// What a fixture folder holds and what has been built from it so far.
struct Fixture<'a> {
    dir: &'a Path,
    rc: Option<ReferenceConfig>,
    cfg: Option<MaSamConfig>,
}

impl Fixture<'_> {
    fn has(&self, file: &str) -> bool {
        self.dir.join(file).is_file()
    }

    /// `<stem>.safetensors`, else `<stem>.pth`.
    fn pick(&self, stem: &str) -> Option<PathBuf> {
        ["safetensors", "pth"]
            .iter()
            .map(|e| self.dir.join(format!("{stem}.{e}")))
            .find(|p| p.is_file())
    }

    /// The first of `files` that the folder lacks, as a `missing` note.
    fn lacks(&self, files: &[&str]) -> Option<String> {
        let absent: Vec<&str> = files.iter().copied().filter(|f| !self.has(f)).collect();
        (!absent.is_empty()).then(|| format!("not in the folder: {}", absent.join(", ")))
    }
}

/// Runs every check on the fixture folder `dir`. Only a folder that does not exist is an `Err`;
/// everything else (absent or unreadable files, numerical mismatches) is in the report.
pub fn run(dir: &Path, strict: bool) -> Result<Report> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut fx = Fixture {
        dir,
        rc: None,
        cfg: None,
    };
    let mut groups = vec![];

    // config.json: every shape of the model
    if fx.has("config.json") {
        let r = ReferenceConfig::from_file(&dir.join("config.json"))
            .context("invalid config.json")
            .and_then(|rc| {
                let cfg = rc
                    .model_config()
                    .context("config.json is not a valid MA-SAM")?;
                Ok((rc, cfg))
            });
        match r {
            Ok((rc, cfg)) => {
                fx.rc = Some(rc);
                fx.cfg = Some(cfg);
                groups.push(Group::from("config", &["config.json"], Ok(vec![])));
            }
            Err(e) => groups.push(Group::from("config", &["config.json"], Err(e))),
        }
    } else {
        groups.push(Group::missing(
            "config",
            &["config.json"],
            "not in the folder: config.json".into(),
        ));
    }

    groups.push(pth_vs_safetensors(&fx, "sam_base"));
    groups.push(pth_vs_safetensors(&fx, "masam_adapter"));
    groups.push(converted_encoder(&fx));
    groups.push(plain_outputs(&fx));
    let (model_groups, trainable_set) = model_groups(&fx);
    groups.extend(model_groups);
    groups.push(loss_group(&fx));
    groups.push(conv3d_group(&fx));
    groups.push(metrics_group(&fx));

    let failed = groups
        .iter()
        .any(|g| matches!(g.status, Status::Fail | Status::Error));
    let complete = groups.iter().all(|g| g.status != Status::Missing);
    let ts_ok = trainable_set.as_ref().is_none_or(|t| t.pass);
    Ok(Report {
        fixture: dir.to_path_buf(),
        pass: !failed && ts_ok && (complete || !strict),
        complete,
        groups,
        trainable_set,
    })
}

/// `sam_base` / `masam_adapter`: the `.pth` and `.safetensors` copies hold the same tensors.
fn pth_vs_safetensors(fx: &Fixture, stem: &'static str) -> Group {
    let (pth, st): (&'static str, &'static str) = match stem {
        "sam_base" => ("sam_base.pth", "sam_base.safetensors"),
        _ => ("masam_adapter.pth", "masam_adapter.safetensors"),
    };
    if let Some(why) = fx.lacks(&[pth, st]) {
        return Group::missing(stem, &[pth, st], why);
    }
    let r = attempt(|| -> Result<Vec<Check>> {
        let a =
            masam_fact::read_tensors(fx.dir.join(pth)).with_context(|| format!("reading {pth}"))?;
        let b =
            masam_fact::read_tensors(fx.dir.join(st)).with_context(|| format!("reading {st}"))?;
        let mut checks = vec![];
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            match b.get(k) {
                Some(want) => checks.push(compare(k, a.get(k), want, "max_abs", 0.0)),
                None => checks.push(compare(k, None, &a[k], "max_abs", 0.0)),
            }
        }
        Ok(checks)
    });
    Group::from(stem, &[pth, st], r).with_note(".pth and .safetensors hold equal tensors")
}

/// Our conversion of `sam_base` to the fine-tuning size against `converted_encoder`.
fn converted_encoder(fx: &Fixture) -> Group {
    const FILES: [&str; 2] = ["converted_encoder.safetensors", "config.json"];
    let Some(cfg) = &fx.cfg else {
        return Group::missing(
            "converted_encoder",
            &FILES,
            "needs a valid config.json".into(),
        );
    };
    if let Some(why) = fx.lacks(&FILES[..1]) {
        return Group::missing("converted_encoder", &FILES, why);
    }
    let Some(sam) = fx.pick("sam_base") else {
        return Group::missing("converted_encoder", &FILES, "needs sam_base".into());
    };
    let r = attempt(|| -> Result<Vec<Check>> {
        let ck = SamCheckpoint::load(&sam).context("loading sam_base")?;
        let conv = ck
            .convert(&cfg.sam.encoder)
            .context("converting sam_base")?;
        let got = conv.checkpoint.encoder_tensors();
        let want = load(fx.dir, FILES[0])?;
        Ok(sorted(&want)
            .into_iter()
            .map(|(k, w)| compare(k, got.get(k), w, "max_rel", FORWARD_TOL))
            .collect())
    });
    Group::from("converted_encoder", &FILES, r)
}

/// Plain SAM (no adapters, no FacT): our converted encoder with the adapter checkpoint's prompt
/// encoder and decoder, against `plain_outputs`.
fn plain_outputs(fx: &Fixture) -> Group {
    const FILES: [&str; 1] = ["plain_outputs.safetensors"];
    let Some(cfg) = &fx.cfg else {
        return Group::missing("plain_outputs", &FILES, "needs a valid config.json".into());
    };
    if let Some(why) = fx.lacks(&FILES) {
        return Group::missing("plain_outputs", &FILES, why);
    }
    let (Some(sam), Some(adapter)) = (fx.pick("sam_base"), fx.pick("masam_adapter")) else {
        return Group::missing(
            "plain_outputs",
            &FILES,
            "needs sam_base and masam_adapter".into(),
        );
    };
    let r = attempt(|| -> Result<Vec<Check>> {
        let plain = load(fx.dir, FILES[0])?;
        let conv = SamCheckpoint::load(&sam)?.convert(&cfg.sam.encoder)?;
        let mut weights = conv.checkpoint.encoder_tensors();
        for (k, v) in masam_fact::read_tensors(&adapter)? {
            if k.starts_with("prompt_encoder.") || k.starts_with("mask_decoder.") {
                weights.insert(k, v);
            }
        }
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let sam = Sam::new(&cfg.sam, vb).context("building plain SAM")?;
        let ctx = ForwardContext::eval_2d();
        let images = get(&plain, FILES[0], "images")?;
        let mut got: HashMap<String, Tensor> = HashMap::new();
        let enc = sam
            .image_encoder
            .forward_with_intermediates(&sam.preprocess(images)?, &ctx)?;
        for (i, b) in enc.blocks.iter().enumerate() {
            got.insert(format!("block_{i}"), b.clone());
        }
        got.insert("image_embeddings".into(), enc.embeddings);
        let out = sam.forward(images, &Prompt::None, &ctx)?;
        got.insert("masks".into(), out.masks);
        got.insert("iou_predictions".into(), out.iou_predictions);
        if let (Some(c), Some(l)) = (plain.get("points_coords"), plain.get("points_labels")) {
            let (sparse, _) = sam.prompt_encoder.forward(Some((c, l)), None, None)?;
            got.insert("points_sparse".into(), sparse);
        }
        if let Some(b) = plain.get("boxes") {
            let (sparse, _) = sam.prompt_encoder.forward(None, Some(b), None)?;
            got.insert("boxes_sparse".into(), sparse);
        }
        let inputs = ["images", "points_coords", "points_labels", "boxes"];
        Ok(sorted(&plain)
            .into_iter()
            .filter(|(k, _)| !inputs.contains(&k.as_str()))
            .map(|(k, w)| compare(k, got.get(k), w, "max_rel", FORWARD_TOL))
            .collect())
    });
    Group::from("plain_outputs", &FILES, r)
}

/// What the MA-SAM forward produced, keyed as in `outputs.safetensors`.
fn forward_outputs(
    model: &MaSam,
    images: &Tensor,
    labels: &Tensor,
    loss_fn: &DiceCeLoss,
) -> Result<(HashMap<String, Tensor>, Tensor)> {
    let enc = model.encode_with_intermediates(images, Mode::Eval)?;
    let mut got: HashMap<String, Tensor> = HashMap::new();
    let patch = match &model.sam.image_encoder.pos_embed {
        Some(pos) => enc.patch_embed.broadcast_sub(pos)?, // recorded before the position embedding
        None => enc.patch_embed.clone(),
    };
    got.insert("patch_embed".into(), patch);
    for (i, b) in enc.blocks.iter().enumerate() {
        got.insert(format!("block_{i}"), b.clone());
    }
    got.insert("image_embeddings".into(), enc.embeddings.clone());
    got.insert("dense_pe".into(), model.sam.prompt_encoder.get_dense_pe()?);
    let out = model.forward(images, &Prompt::None, Mode::Eval)?;
    got.insert("low_res_logits".into(), out.low_res_logits.clone());
    got.insert("iou_predictions".into(), out.iou_predictions.clone());
    let loss = loss_fn.forward(&out.masks, labels)?;
    for (k, t) in [
        ("loss", &loss.total),
        ("loss_ce", &loss.ce),
        ("loss_dice", &loss.dice),
    ] {
        got.insert(k.into(), t.flatten_all()?); // the reference stores the scalars as (1,)
    }
    Ok((got, loss.total))
}

fn loss_config(rc: Option<&ReferenceConfig>) -> Result<DiceCeLoss> {
    let mut lc = DiceCeLossConfig::default();
    if let Some(rc) = rc {
        lc = lc
            .with_ce_weight(rc.loss.ce_weight)
            .with_dice_weight(rc.loss.dice_weight)
            .with_ignore_index(rc.loss.ignore_index);
    }
    Ok(DiceCeLoss::new(lc)?)
}

/// Compares the forward keys of `outputs.safetensors` (all but the AdamW trajectory).
fn outputs_checks(expect: &HashMap<String, Tensor>, got: &HashMap<String, Tensor>) -> Vec<Check> {
    sorted(expect)
        .into_iter()
        .filter(|(k, _)| k.as_str() != "adamw_losses")
        .map(|(k, w)| compare(k, got.get(k), w, "max_rel", FORWARD_TOL))
        .collect()
}

/// The groups that run MA-SAM itself: outputs (unmerged and merged FacT), grads, the box
/// prompts (both), the AdamW trajectory; and the trainable set.
fn model_groups(fx: &Fixture) -> (Vec<Group>, Option<TrainableSet>) {
    let names: [(&'static str, &'static [&'static str]); 6] = [
        ("outputs", &["outputs.safetensors", "inputs.safetensors"]),
        (
            "outputs_merged",
            &["outputs.safetensors", "inputs.safetensors"],
        ),
        ("grads", &["grads.safetensors", "inputs.safetensors"]),
        (
            "bbox_outputs",
            &["bbox_outputs.safetensors", "inputs.safetensors"],
        ),
        (
            "bbox_outputs_merged",
            &["bbox_outputs.safetensors", "inputs.safetensors"],
        ),
        ("adamw", &["outputs.safetensors", "inputs.safetensors"]),
    ];
    let all_missing = |why: &str| -> Vec<Group> {
        names
            .iter()
            .map(|(n, f)| Group::missing(n, f, why.into()))
            .collect()
    };
    let (Some(rc), Some(cfg)) = (&fx.rc, &fx.cfg) else {
        return (all_missing("needs a valid config.json"), None);
    };
    let (Some(sam_path), Some(adapter)) = (fx.pick("sam_base"), fx.pick("masam_adapter")) else {
        return (all_missing("needs sam_base and masam_adapter"), None);
    };
    if let Some(why) = fx.lacks(&["inputs.safetensors"]) {
        return (all_missing(&why), None);
    }
    // the model and the inputs: a failure here puts every model group in error
    let setup = attempt(|| -> Result<_> {
        let sam = SamCheckpoint::load(&sam_path).context("loading sam_base")?;
        let model = MaSam::from_sam_checkpoint(cfg, &sam, 0, &Device::Cpu)?;
        model
            .load_reference(&adapter)
            .context("loading masam_adapter")?;
        let inputs = load(fx.dir, "inputs.safetensors")?;
        let images = get(&inputs, "inputs.safetensors", "images")?.clone();
        let labels = get(&inputs, "inputs.safetensors", "labels")?.clone();
        let loss_fn = loss_config(Some(rc))?;
        Ok((model, images, labels, loss_fn))
    });
    let (model, images, labels, loss_fn) = match setup {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e:#}");
            let groups = names
                .iter()
                .map(|(n, f)| Group::from(n, f, Err(anyhow!("{msg}"))))
                .collect();
            return (groups, None);
        }
    };
    let mut groups = vec![];
    let has_outputs = fx.has("outputs.safetensors");
    let expect = if has_outputs {
        load(fx.dir, "outputs.safetensors")
    } else {
        Err(anyhow!("not in the folder: outputs.safetensors"))
    };

    // checkpoint round trip, part of masam_adapter's group in spirit: kept with the outputs
    let round_trip = attempt(|| -> Result<Check> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tmp = std::env::temp_dir().join(format!(
            "masam-parity-{}-{n}.safetensors",
            std::process::id()
        ));
        model.save_reference(&tmp)?;
        let saved = candle_core::safetensors::load(&tmp, &Device::Cpu);
        std::fs::remove_file(&tmp).ok();
        let (saved, original) = (saved?, masam_fact::read_tensors(&adapter)?);
        let mut worst = if saved.len() == original.len() {
            0f64
        } else {
            f64::INFINITY
        };
        for (k, t) in &original {
            worst = worst.max(compare(k, saved.get(k), t, "max_abs", 0.0).max_abs);
        }
        Ok(Check {
            name: "masam_adapter_round_trip".into(),
            max_abs: worst,
            max_rel: worst,
            metric: "max_abs",
            tolerance: 0.0,
            pass: worst == 0.0,
        })
    });

    // unmerged forward, then its gradients
    let unmerged = forward_outputs(&model, &images, &labels, &loss_fn);
    let mut trainable_set = None;
    let mut grads_group = None;
    match (&expect, &unmerged) {
        (Ok(expect), Ok((got, _))) => {
            let mut checks = outputs_checks(expect, got);
            match &round_trip {
                Ok(c) => checks.push(c.clone()),
                Err(e) => checks.push(Check {
                    name: format!("masam_adapter_round_trip ({e:#})"),
                    max_abs: f64::INFINITY,
                    max_rel: f64::INFINITY,
                    metric: "max_abs",
                    tolerance: 0.0,
                    pass: false,
                }),
            }
            groups.push(Group::from("outputs", names[0].1, Ok(checks)));
        }
        (Err(e), _) if !has_outputs => {
            groups.push(Group::missing("outputs", names[0].1, format!("{e}")))
        }
        (Err(e), _) => groups.push(Group::from("outputs", names[0].1, Err(anyhow!("{e:#}")))),
        (_, Err(e)) => groups.push(Group::from("outputs", names[0].1, Err(anyhow!("{e:#}")))),
    }
    if let Ok((_, total)) = &unmerged {
        let r = attempt(|| -> Result<(Vec<Check>, TrainableSet)> {
            let grads = total.backward()?;
            let (mut by_key, mut nonzero) = (HashMap::new(), BTreeSet::new());
            for (name, var) in model.trainable_vars() {
                let key = reference_key(&name).unwrap_or(name);
                if let Some(g) = grads.get(var.as_tensor()) {
                    if max_abs_f64(g)? > 0.0 {
                        nonzero.insert(key.clone());
                    }
                    by_key.insert(key, g.clone());
                }
            }
            let expected: BTreeSet<String> = rc.trainable_keys.iter().cloned().collect();
            let missing: Vec<String> = expected.difference(&nonzero).cloned().collect();
            let unexpected: Vec<String> = nonzero.difference(&expected).cloned().collect();
            let ts = TrainableSet {
                pass: missing.is_empty() && unexpected.is_empty(),
                missing,
                unexpected,
            };
            let want = load(fx.dir, "grads.safetensors")?;
            let checks = sorted(&want)
                .into_iter()
                .map(|(k, w)| compare(k, by_key.get(k), w, "max_rel", GRAD_TOL))
                .collect();
            Ok((checks, ts))
        });
        grads_group = Some(match r {
            _ if !fx.has("grads.safetensors") => Group::missing(
                "grads",
                names[2].1,
                "not in the folder: grads.safetensors".into(),
            ),
            Ok((checks, ts)) => {
                trainable_set = Some(ts);
                Group::from("grads", names[2].1, Ok(checks))
            }
            Err(e) => Group::from("grads", names[2].1, Err(e)),
        });
    }

    // merged FacT: the inference model (plain tensors, increments folded into q/v)
    let merged = model.to_inference().map_err(anyhow::Error::from);
    let merged_out = merged
        .as_ref()
        .map_err(|e| anyhow!("{e:#}"))
        .and_then(|m| forward_outputs(m, &images, &labels, &loss_fn));
    groups.push(
        match (&expect, merged_out) {
            (Err(e), _) if !has_outputs => {
                Group::missing("outputs_merged", names[1].1, format!("{e}"))
            }
            (Err(e), _) => Group::from("outputs_merged", names[1].1, Err(anyhow!("{e:#}"))),
            (Ok(expect), r) => Group::from(
                "outputs_merged",
                names[1].1,
                r.map(|(got, _)| outputs_checks(expect, &got)),
            ),
        }
        .with_note("FacT merged into q/v (MaSam::to_inference)"),
    );
    groups.push(grads_group.unwrap_or_else(|| {
        Group::from(
            "grads",
            names[2].1,
            Err(anyhow!("the forward pass failed: no gradients")),
        )
    }));

    // box prompts, on both models
    for (name, m) in [
        ("bbox_outputs", Ok(&model)),
        ("bbox_outputs_merged", merged.as_ref()),
    ] {
        let files = if name == "bbox_outputs" {
            names[3].1
        } else {
            names[4].1
        };
        if let Some(why) = fx.lacks(&["bbox_outputs.safetensors"]) {
            groups.push(Group::missing(name, files, why));
            continue;
        }
        let r = attempt(|| -> Result<Vec<Check>> {
            let m = m.map_err(|e| anyhow!("{e:#}"))?;
            let bbox = load(fx.dir, "bbox_outputs.safetensors")?;
            let prompt = MaSam::boxes_prompt(get(&bbox, "bbox_outputs.safetensors", "boxes")?)?;
            let out = m.forward(&images, &prompt, Mode::Eval)?;
            let got: HashMap<String, Tensor> = [
                ("low_res_logits".to_string(), out.low_res_logits),
                ("iou_predictions".to_string(), out.iou_predictions),
            ]
            .into();
            Ok(sorted(&bbox)
                .into_iter()
                .filter(|(k, _)| k.as_str() != "boxes")
                .map(|(k, w)| compare(k, got.get(k), w, "max_rel", FORWARD_TOL))
                .collect())
        });
        groups.push(Group::from(name, files, r));
    }

    // AdamW trajectory (mutates the model: last)
    groups.push(match &expect {
        Err(e) if !has_outputs => Group::missing("adamw", names[5].1, format!("{e}")),
        Err(e) => Group::from("adamw", names[5].1, Err(anyhow!("{e:#}"))),
        Ok(expect) => {
            let r = attempt(|| -> Result<Vec<Check>> {
                let want = get(expect, "outputs.safetensors", "adamw_losses")?;
                let (a, s) = (&rc.adamw, rc.adamw.steps);
                let oc = AdamWConfig::default()
                    .with_lr(a.lr)
                    .with_betas(a.betas[0], a.betas[1])
                    .with_eps(a.eps)
                    .with_weight_decay(a.weight_decay);
                let mut opt = AdamW::from_map(model.trainable_vars().into_iter().collect(), oc)?;
                let mut losses = vec![];
                for step in 0..=s {
                    let out = model.forward(&images, &Prompt::None, Mode::Eval)?;
                    let l = loss_fn.forward(&out.masks, &labels)?;
                    losses.push(l.total.to_scalar::<f32>()?);
                    if step < s {
                        opt.step(&l.total.backward()?)?;
                    }
                }
                let got = Tensor::new(losses, &Device::Cpu)?;
                Ok(vec![compare(
                    "adamw_losses",
                    Some(&got),
                    want,
                    "max_abs",
                    ADAMW_TOL,
                )])
            });
            Group::from("adamw", names[5].1, r)
        }
    });
    (groups, trainable_set)
}

/// `loss.safetensors`: the Dice + CE loss alone and its gradient.
fn loss_group(fx: &Fixture) -> Group {
    const FILES: [&str; 1] = ["loss.safetensors"];
    if let Some(why) = fx.lacks(&FILES) {
        return Group::missing("loss", &FILES, why);
    }
    let r = attempt(|| -> Result<Vec<Check>> {
        let f = load(fx.dir, FILES[0])?;
        let logits = Var::from_tensor(get(&f, FILES[0], "logits")?)?;
        let labels = get(&f, FILES[0], "labels")?;
        let out = loss_config(fx.rc.as_ref())?.forward(logits.as_tensor(), labels)?;
        let grads = out.total.backward()?;
        let mut got: HashMap<String, Tensor> = HashMap::new();
        for (k, t) in [
            ("loss", &out.total),
            ("loss_ce", &out.ce),
            ("loss_dice", &out.dice),
        ] {
            got.insert(k.into(), t.clone());
        }
        if let Some(g) = grads.get(logits.as_tensor()) {
            got.insert("grad_logits".into(), g.clone());
        }
        Ok(sorted(&f)
            .into_iter()
            .filter(|(k, _)| !["logits", "labels"].contains(&k.as_str()))
            .map(|(k, w)| {
                // scalars may be stored as () or (1,)
                let g = got.get(k).and_then(|t| t.reshape(w.dims()).ok());
                let tol = if k.starts_with("grad") {
                    GRAD_TOL
                } else {
                    FORWARD_TOL
                };
                compare(k, g.as_ref(), w, "max_rel", tol)
            })
            .collect())
    });
    Group::from("loss", &FILES, r)
}

/// `conv3d.safetensors`: every `<case>.x` case, forward and the three gradients.
fn conv3d_group(fx: &Fixture) -> Group {
    const FILES: [&str; 1] = ["conv3d.safetensors"];
    if let Some(why) = fx.lacks(&FILES) {
        return Group::missing("conv3d", &FILES, why);
    }
    let r = attempt(|| -> Result<Vec<Check>> {
        let t = load(fx.dir, FILES[0])?;
        let cases: BTreeSet<&str> = t.keys().filter_map(|k| k.strip_suffix(".x")).collect();
        if cases.is_empty() {
            bail!("{} holds no `<case>.x` tensor", FILES[0]);
        }
        let mut checks = vec![];
        for case in cases {
            let g = |k: &str| get(&t, FILES[0], &format!("{case}.{k}")).cloned();
            let x = Var::from_tensor(&g("x")?)?;
            let w = Var::from_tensor(&g("weight")?)?;
            let b = t
                .get(&format!("{case}.bias"))
                .map(Var::from_tensor)
                .transpose()?;
            let y = conv3d_op(
                x.as_tensor(),
                w.as_tensor(),
                b.as_ref().map(|b| b.as_tensor()),
                Conv3dPadding::Same,
            )?;
            let grads = (&y * g("grad_y")?)?.sum_all()?.backward()?;
            let mut got: HashMap<String, Tensor> = HashMap::new();
            got.insert("y".into(), y);
            for (k, v) in [
                ("grad_x", Some(&x)),
                ("grad_weight", Some(&w)),
                ("grad_bias", b.as_ref()),
            ] {
                if let Some(gr) = v.and_then(|v| grads.get(v.as_tensor())) {
                    got.insert(k.into(), gr.clone());
                }
            }
            for k in ["y", "grad_x", "grad_weight", "grad_bias"] {
                if let Some(want) = t.get(&format!("{case}.{k}")) {
                    let tol = if k == "y" { FORWARD_TOL } else { GRAD_TOL };
                    checks.push(compare(
                        &format!("{case}.{k}"),
                        got.get(k),
                        want,
                        "max_rel",
                        tol,
                    ));
                }
            }
        }
        Ok(checks)
    });
    Group::from("conv3d", &FILES, r)
}

fn u8_volume(t: &Tensor) -> Result<Array3<u8>> {
    let (z, y, x) = t.dims3()?;
    let v = t.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
    Ok(Array3::from_shape_vec((z, y, x), v)?)
}

/// `metrics.safetensors`: Dice, HD95, ASD, NSD at 1 and 2 mm of every `caseN` pair.
fn metrics_group(fx: &Fixture) -> Group {
    const FILES: [&str; 1] = ["metrics.safetensors"];
    const NAMES: [&str; 5] = ["dice", "hd95", "asd", "nsd_1mm", "nsd_2mm"];
    if let Some(why) = fx.lacks(&FILES) {
        return Group::missing("metrics", &FILES, why);
    }
    let r = attempt(|| -> Result<Vec<Check>> {
        let t = load(fx.dir, FILES[0])?;
        let want = get(&t, FILES[0], "metrics")?.to_dtype(DType::F64)?;
        let (n, cols) = want.dims2()?;
        if cols != NAMES.len() {
            bail!("metrics is {n} x {cols}, expected {n} x 5");
        }
        let sp = get(&t, FILES[0], "spacing_zyx")?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let sp: [f64; 3] = sp
            .try_into()
            .map_err(|_| anyhow!("spacing_zyx is not 3 values"))?;
        let mut rows = vec![];
        for i in 0..n {
            let pred = u8_volume(get(&t, FILES[0], &format!("case{i}.pred"))?)?;
            let gt = u8_volume(get(&t, FILES[0], &format!("case{i}.gt"))?)?;
            let (p, g) = (foreground_mask(pred.view()), foreground_mask(gt.view()));
            let dice = compute_dice(p.view(), g.view(), &EmptyPolicy::overlap_reference())?;
            let hd95 = compute_hd95(p.view(), g.view(), sp)?;
            let asd = compute_asd(p.view(), g.view(), sp)?;
            let nsd = compute_surface_dice_at(
                p.view(),
                g.view(),
                sp,
                &[1.0, 2.0],
                &EmptyPolicy::surface_dice_deepmind(),
            )?;
            rows.extend([dice, hd95, asd, nsd[0], nsd[1]]);
        }
        let got = Tensor::from_vec(rows, (n, cols), &Device::Cpu)?;
        let mut checks = vec![];
        for (j, name) in NAMES.iter().enumerate() {
            let (g, w) = (got.narrow(1, j, 1)?, want.narrow(1, j, 1)?);
            checks.push(compare(name, Some(&g), &w, "max_rel", METRICS_TOL));
        }
        Ok(checks)
    });
    Group::from("metrics", &FILES, r)
}
