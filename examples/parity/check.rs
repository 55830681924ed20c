//! The parity check behind the `parity` example, shared with `tests/parity_example.rs`: builds
//! MA-SAM from a reference fixture folder (the `tests/fixtures/reference-tiny` layout and
//! `config.json` schema, any configuration) and compares every tensor the reference recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use masam_adapter::checkpoint::reference_key;
use masam_adapter::MaSam;
use masam_app::reference_config::ReferenceConfig;
use masam_sam::{Prompt, SamCheckpoint};
use masam_train::{AdamW, AdamWConfig, DiceCeLoss, DiceCeLossConfig};
use serde::Serialize;

/// Max relative error allowed for forward tensors (fixture README).
const FORWARD_TOL: f32 = 1e-4;
/// Max relative error allowed for gradients.
const GRAD_TOL: f32 = 1e-3;
/// Max absolute error allowed for the AdamW losses.
const ADAMW_TOL: f32 = 1e-3;

/// One compared tensor.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `outputs`, `grads`, `bbox_outputs` or `checkpoint`.
    pub group: &'static str,
    /// The tensor's key in its fixture file.
    pub name: String,
    /// `max_rel` = max|a−b| / (max|b| + 1e-6), or `max_abs` = max|a−b|.
    pub metric: &'static str,
    /// The measured error (null in JSON = missing tensor or shape mismatch).
    pub error: f32,
    /// The largest error that passes.
    pub tolerance: f32,
    /// `error <= tolerance`.
    pub pass: bool,
}

/// Parameters with a non-zero gradient against the config's `trainable_keys`.
#[derive(Debug, Serialize)]
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
    /// Every check and the trainable set passed.
    pub pass: bool,
    /// Every compared tensor.
    pub checks: Vec<Check>,
    /// The gradient-support check.
    pub trainable_set: TrainableSet,
}

fn max_abs(t: &Tensor) -> Result<f32> {
    Ok(t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// Compares `got` with `want`; a missing tensor or a shape mismatch is an infinite error.
fn check(
    group: &'static str,
    name: &str,
    got: Option<&Tensor>,
    want: &Tensor,
    tol: f32,
) -> Result<Check> {
    let abs = group == "outputs" && name == "adamw_losses";
    let error = match got {
        Some(g) if g.dims() == want.dims() => {
            let (g, w) = (g.to_dtype(DType::F32)?, want.to_dtype(DType::F32)?);
            let d = max_abs(&(g - &w)?)?;
            if abs {
                d
            } else {
                d / (max_abs(&w)? + 1e-6)
            }
        }
        _ => f32::INFINITY,
    };
    let metric = if abs { "max_abs" } else { "max_rel" };
    Ok(Check::new(group, name, metric, error, tol))
}

impl Check {
    fn new(group: &'static str, name: &str, metric: &'static str, error: f32, tol: f32) -> Self {
        let (name, tolerance, pass) = (name.into(), tol, error <= tol);
        Check {
            group,
            name,
            metric,
            error,
            tolerance,
            pass,
        }
    }
}

fn load(dir: &Path, name: &str) -> Result<HashMap<String, Tensor>> {
    let p = dir.join(name);
    candle_core::safetensors::load(&p, &Device::Cpu)
        .with_context(|| format!("reading {}", p.display()))
}

fn get<'a>(m: &'a HashMap<String, Tensor>, file: &str, key: &str) -> Result<&'a Tensor> {
    m.get(key).with_context(|| format!("{file} has no `{key}`"))
}

/// `<stem>.safetensors`, else `<stem>.pth`.
fn pick(dir: &Path, stem: &str) -> Result<PathBuf> {
    ["safetensors", "pth"]
        .iter()
        .map(|e| dir.join(format!("{stem}.{e}")))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{}: neither {stem}.safetensors nor {stem}.pth",
                dir.display()
            )
        })
}

/// Runs every check on the fixture folder `dir`. Errors (missing folder or file, invalid config,
/// checkpoint that does not fit) are returned; numerical mismatches are failed checks.
pub fn run(dir: &Path) -> Result<Report> {
    if !dir.join("config.json").is_file() {
        bail!("{} is not a fixture folder: no config.json", dir.display());
    }
    let rc =
        ReferenceConfig::from_file(&dir.join("config.json")).context("invalid fixture config")?;
    let cfg = rc
        .model_config()
        .context("config.json is not a valid MA-SAM")?;
    let sam = SamCheckpoint::load(pick(dir, "sam_base")?).context("loading sam_base")?;
    let model = MaSam::from_sam_checkpoint(&cfg, &sam, 0, &Device::Cpu)?;
    let adapter = pick(dir, "masam_adapter")?;
    model
        .load_reference(&adapter)
        .context("loading masam_adapter")?;
    let (inputs, expect) = (
        load(dir, "inputs.safetensors")?,
        load(dir, "outputs.safetensors")?,
    );
    let images = get(&inputs, "inputs.safetensors", "images")?;
    let labels = get(&inputs, "inputs.safetensors", "labels")?;
    let mut checks = vec![];

    // checkpoint round trip: save in the reference format, read back, compare with the file
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
        0f32
    } else {
        f32::INFINITY
    };
    for (k, t) in &original {
        worst = worst.max(check("checkpoint", k, saved.get(k), t, 0.0)?.error);
    }
    checks.push(Check::new(
        "checkpoint",
        "round_trip",
        "max_rel",
        worst,
        0.0,
    ));

    // forward: everything the reference recorded, keyed as in outputs.safetensors
    let enc = model.encode_with_intermediates(images, masam_adapter::Mode::Eval)?;
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
    let out = model.forward(images, &Prompt::None, masam_adapter::Mode::Eval)?;
    got.insert("low_res_logits".into(), out.low_res_logits.clone());
    got.insert("iou_predictions".into(), out.iou_predictions.clone());
    let lc = DiceCeLossConfig::default().with_ce_weight(rc.loss.ce_weight);
    let lc = lc
        .with_dice_weight(rc.loss.dice_weight)
        .with_ignore_index(rc.loss.ignore_index);
    let loss_fn = DiceCeLoss::new(lc)?;
    let loss = loss_fn.forward(&out.masks, labels)?;
    for (k, t) in [
        ("loss", &loss.total),
        ("loss_ce", &loss.ce),
        ("loss_dice", &loss.dice),
    ] {
        got.insert(k.into(), t.flatten_all()?); // the reference stores the scalars as (1,)
    }

    // gradients, and which parameters receive a non-zero one
    let grads = loss.total.backward()?;
    let (mut by_key, mut nonzero) = (HashMap::new(), BTreeSet::new());
    for (name, var) in model.trainable_vars() {
        let key = reference_key(&name).unwrap_or(name);
        if let Some(g) = grads.get(var.as_tensor()) {
            if max_abs(g)? > 0.0 {
                nonzero.insert(key.clone());
            }
            by_key.insert(key, g.clone());
        }
    }
    let expected: BTreeSet<String> = rc.trainable_keys.iter().cloned().collect();
    let missing: Vec<String> = expected.difference(&nonzero).cloned().collect();
    let unexpected: Vec<String> = nonzero.difference(&expected).cloned().collect();
    let pass = missing.is_empty() && unexpected.is_empty();
    let trainable_set = TrainableSet {
        pass,
        missing,
        unexpected,
    };

    // box prompts, when the fixture has them
    if dir.join("bbox_outputs.safetensors").is_file() {
        let bbox = load(dir, "bbox_outputs.safetensors")?;
        let prompt = MaSam::boxes_prompt(get(&bbox, "bbox_outputs.safetensors", "boxes")?)?;
        let out = model.forward(images, &prompt, masam_adapter::Mode::Eval)?;
        for (k, t) in [
            ("low_res_logits", &out.low_res_logits),
            ("iou_predictions", &out.iou_predictions),
        ] {
            let want = get(&bbox, "bbox_outputs.safetensors", k)?;
            checks.push(check("bbox_outputs", k, Some(t), want, FORWARD_TOL)?);
        }
    }

    // AdamW trajectory (mutates the model: last)
    if expect.contains_key("adamw_losses") {
        let (a, s) = (&rc.adamw, rc.adamw.steps);
        let oc = AdamWConfig::default()
            .with_lr(a.lr)
            .with_betas(a.betas[0], a.betas[1]);
        let oc = oc.with_eps(a.eps).with_weight_decay(a.weight_decay);
        let mut opt = AdamW::from_map(model.trainable_vars().into_iter().collect(), oc)?;
        let mut losses = vec![];
        for step in 0..=s {
            let l = loss_fn.forward(
                &model
                    .forward(images, &Prompt::None, masam_adapter::Mode::Eval)?
                    .masks,
                labels,
            )?;
            losses.push(l.total.to_scalar::<f32>()?);
            if step < s {
                opt.step(&l.total.backward()?)?;
            }
        }
        got.insert("adamw_losses".into(), Tensor::new(losses, &Device::Cpu)?);
    }
    let sorted = |m: &HashMap<String, Tensor>| m.clone().into_iter().collect::<BTreeMap<_, _>>();
    for (k, want) in sorted(&expect) {
        let tol = if k == "adamw_losses" {
            ADAMW_TOL
        } else {
            FORWARD_TOL
        };
        checks.push(check("outputs", &k, got.get(&k), &want, tol)?);
    }
    for (k, want) in sorted(&load(dir, "grads.safetensors")?) {
        checks.push(check("grads", &k, by_key.get(&k), &want, GRAD_TOL)?);
    }
    let pass = trainable_set.pass && checks.iter().all(|c| c.pass);
    Ok(Report {
        fixture: dir.to_path_buf(),
        pass,
        checks,
        trainable_set,
    })
}
