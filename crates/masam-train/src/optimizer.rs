//! AdamW with PyTorch semantics, parameter groups and a name-keyed, resumable state.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters. `Default` is the reference (`train.py`): the optimiser is built with
/// `lr = 8e-4 / 250` (the first warmup value), betas (0.9, 0.999), eps 1e-8, weight decay 0.1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Learning rate (usually overwritten every step by [`AdamW::set_lr`]).
    pub lr: f64,
    /// First-moment decay β1.
    pub beta1: f64,
    /// Second-moment decay β2.
    pub beta2: f64,
    /// Term added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay λ, for groups that do not set their own.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 8e-4 / 250.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

impl AdamWConfig {
    /// Sets the learning rate.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets β1 and β2.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Sets eps.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Sets the default weight decay.
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }

    /// Checks the ranges PyTorch checks: lr, eps, weight decay ≥ 0 and betas in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(TrainError::InvalidConfig(format!(
                "AdamW {what} out of range: {v}"
            )))
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr", self.lr);
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad("eps", self.eps);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay);
        }
        for (n, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(n, b);
            }
        }
        Ok(())
    }
}

/// A named set of parameters sharing a learning-rate multiplier and a weight decay.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// use masam_train::ParamGroup;
/// # fn main() -> candle_core::Result<()> {
/// let w = Var::zeros((4, 4), DType::F32, &Device::Cpu)?;
/// let b = Var::zeros(4, DType::F32, &Device::Cpu)?;
/// let named = vec![("fc.weight".to_string(), w), ("fc.bias".to_string(), b)];
/// let groups = ParamGroup::split_no_decay(named, 0.1);
/// assert_eq!(groups[0].params().len(), 1); // "decay": fc.weight
/// assert_eq!(groups[1].weight_decay(), Some(0.0)); // "no_decay": fc.bias
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ParamGroup {
    name: String,
    params: Vec<(String, Var)>,
    lr_scale: f64,
    weight_decay: Option<f64>,
}

impl ParamGroup {
    /// A group with lr multiplier 1 and the optimiser's default weight decay.
    pub fn new(name: impl Into<String>, params: Vec<(String, Var)>) -> Self {
        Self {
            name: name.into(),
            params,
            lr_scale: 1.0,
            weight_decay: None,
        }
    }

    /// A group from a name → var map, in name order (so the order is deterministic).
    pub fn from_map(name: impl Into<String>, vars: HashMap<String, Var>) -> Self {
        let mut params: Vec<(String, Var)> = vars.into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::new(name, params)
    }

    /// Multiplies the optimiser's learning rate by `scale` for this group.
    pub fn with_lr_scale(mut self, scale: f64) -> Self {
        self.lr_scale = scale;
        self
    }

    /// Uses weight decay `wd` for this group instead of the optimiser default.
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = Some(wd);
        self
    }

    /// Splits parameters into `"decay"` (weight decay `wd`) and `"no_decay"` (0): biases (names
    /// ending in `bias`) and tensors of rank ≤ 1 (norm weights, embeddings vectors) go to the
    /// latter. Both groups are sorted by name. (The reference decays everything: use one group
    /// for parity.)
    pub fn split_no_decay(named: impl IntoIterator<Item = (String, Var)>, wd: f64) -> Vec<Self> {
        let (mut decay, mut no_decay): (Vec<_>, Vec<_>) = named
            .into_iter()
            .partition(|(n, v)| !(n.ends_with("bias") || v.as_tensor().rank() <= 1));
        decay.sort_by(|a, b| a.0.cmp(&b.0));
        no_decay.sort_by(|a, b| a.0.cmp(&b.0));
        vec![
            Self::new("decay", decay).with_weight_decay(wd),
            Self::new("no_decay", no_decay).with_weight_decay(0.0),
        ]
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The named parameters.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }
    /// The learning-rate multiplier.
    pub fn lr_scale(&self) -> f64 {
        self.lr_scale
    }
    /// The group's own weight decay, if set.
    pub fn weight_decay(&self) -> Option<f64> {
        self.weight_decay
    }
}

/// Per-parameter state: the f32 moments and the number of steps this parameter has taken.
#[derive(Debug, Clone)]
struct ParamState {
    name: String,
    var: Var,
    group: usize,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
    step: u64,
}

#[derive(Debug, Clone)]
struct GroupInfo {
    name: String,
    lr_scale: f64,
    weight_decay: f64,
}

/// AdamW as `torch.optim.AdamW` (single-tensor path, `amsgrad=False`, `maximize=False`).
///
/// For each parameter θ that has a gradient g in the store, with its own step counter t:
/// ```text
/// t ← t + 1
/// θ ← θ·(1 − lr·λ)                       (decoupled decay first)
/// m ← m + (1 − β1)(g − m)                (PyTorch's lerp)
/// v ← β2·v + (1 − β2)·g²
/// θ ← θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
/// ```
/// where lr = optimiser lr × group lr multiplier and λ the group's weight decay. Parameters with
/// no gradient are skipped entirely (no decay, no step count), as in PyTorch. Moments are f32
/// whatever the parameter dtype; the update is computed in f32 and cast back.
///
/// The state ([`AdamW::state_dict`]) holds the moments and step of each parameter under its
/// name, so training resumes bit-exactly after [`AdamW::load_state_dict`].
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use masam_train::{AdamW, AdamWConfig, ParamGroup};
/// # fn main() -> masam_train::Result<()> {
/// let w = Var::new(&[1f32, -2.0], &Device::Cpu)?;
/// let mut opt = AdamW::new(
///     vec![ParamGroup::new("all", vec![("w".into(), w.clone())])],
///     AdamWConfig::default().with_lr(0.1).with_weight_decay(0.0),
/// )?;
/// let loss = w.as_tensor().sqr()?.sum_all()?;
/// opt.step(&loss.backward()?)?;
/// // The first Adam step moves each coordinate by lr against the sign of its gradient.
/// let v: Vec<f32> = w.as_tensor().to_vec1()?;
/// assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdamW {
    cfg: AdamWConfig,
    groups: Vec<GroupInfo>,
    params: Vec<ParamState>,
    by_name: HashMap<String, usize>,
}

const STATE_PREFIX: &str = "state.";
const EXP_AVG: &str = ".exp_avg";
const EXP_AVG_SQ: &str = ".exp_avg_sq";
const STEP: &str = ".step";
const LR_KEY: &str = "hyper.lr";

impl AdamW {
    /// An optimiser over `groups`.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] for out-of-range hyper-parameters (or a negative group lr
    /// multiplier / weight decay), [`TrainError::DuplicateParameter`] if a name or a variable
    /// appears twice.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let mut infos = Vec::with_capacity(groups.len());
        let mut params = Vec::new();
        let mut by_name = HashMap::new();
        let mut ids = HashSet::new();
        for (gi, g) in groups.into_iter().enumerate() {
            let wd = g.weight_decay.unwrap_or(cfg.weight_decay);
            if !(g.lr_scale.is_finite() && g.lr_scale >= 0.0 && wd.is_finite() && wd >= 0.0) {
                return Err(TrainError::InvalidConfig(format!(
                    "group {:?}: lr_scale {} / weight_decay {wd} out of range",
                    g.name, g.lr_scale
                )));
            }
            infos.push(GroupInfo {
                name: g.name,
                lr_scale: g.lr_scale,
                weight_decay: wd,
            });
            for (name, var) in g.params {
                if by_name.contains_key(&name) || !ids.insert(var.as_tensor().id()) {
                    return Err(TrainError::DuplicateParameter(name));
                }
                by_name.insert(name.clone(), params.len());
                params.push(ParamState {
                    name,
                    var,
                    group: gi,
                    exp_avg: None,
                    exp_avg_sq: None,
                    step: 0,
                });
            }
        }
        Ok(Self {
            cfg,
            groups: infos,
            params,
            by_name,
        })
    }

    /// One group holding every variable of `vars`, in name order, with the default decay.
    pub fn from_map(vars: HashMap<String, Var>, cfg: AdamWConfig) -> Result<Self> {
        Self::new(vec![ParamGroup::from_map("all", vars)], cfg)
    }

    /// The current (base) learning rate.
    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    /// Sets the base learning rate (each group uses it times its multiplier).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Parameter names in registration order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// Group names in registration order.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.name.as_str())
    }

    /// The variables with their names, in registration order.
    pub fn named_vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.var))
    }

    /// How many steps the parameter `name` has taken (`None` for an unknown name).
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).map(|&i| self.params[i].step)
    }

    /// Applies one AdamW update to every parameter that has a gradient in `grads`.
    ///
    /// # Errors
    /// [`TrainError::ShapeMismatch`] if a gradient's shape differs from its parameter's.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let (beta1, beta2, eps) = (self.cfg.beta1, self.cfg.beta2, self.cfg.eps);
        for p in self.params.iter_mut() {
            let Some(grad) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            if grad.dims() != p.var.dims() {
                return Err(TrainError::ShapeMismatch {
                    what: format!("gradient of {}", p.name),
                    expected: p.var.dims().to_vec(),
                    got: grad.dims().to_vec(),
                });
            }
            let group = &self.groups[p.group];
            let lr = self.cfg.lr * group.lr_scale;
            let wd = group.weight_decay;
            let step = p.step + 1;
            let hyper = (lr, wd, (beta1, beta2, eps), step);
            let (m, v) = (p.exp_avg.as_ref(), p.exp_avg_sq.as_ref());
            let (theta, exp_avg, exp_avg_sq) =
                match fused_update(p.var.as_tensor(), grad, m, v, hyper)? {
                    Some(r) => r,
                    None => composed_update(p.var.as_tensor(), grad, m, v, hyper)?,
                };
            let dtype = p.var.dtype();
            p.var.set(&theta.to_dtype(dtype)?)?;
            p.exp_avg = Some(exp_avg);
            p.exp_avg_sq = Some(exp_avg_sq);
            p.step = step;
        }
        Ok(())
    }

    /// The optimiser state by name: `state.{param}.exp_avg` and `.exp_avg_sq` (f32, the
    /// parameter's shape), `state.{param}.step` (i64 scalar) for each parameter that has taken a
    /// step, and `hyper.lr` (f64 scalar). Save it with [`crate::TrainingState`] or
    /// `candle_core::safetensors::save`.
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        let dev = self
            .params
            .first()
            .map(|p| p.var.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        out.insert(LR_KEY.to_string(), Tensor::new(self.cfg.lr, &dev)?);
        for p in &self.params {
            if let (Some(m), Some(v)) = (&p.exp_avg, &p.exp_avg_sq) {
                let key = format!("{STATE_PREFIX}{}", p.name);
                out.insert(format!("{key}{EXP_AVG}"), m.clone());
                out.insert(format!("{key}{EXP_AVG_SQ}"), v.clone());
                out.insert(
                    format!("{key}{STEP}"),
                    Tensor::new(p.step as i64, m.device())?,
                );
            }
        }
        Ok(out)
    }

    /// Restores a state made by [`AdamW::state_dict`] (possibly by another process). Parameters
    /// absent from `state` start afresh; all-or-nothing: on error nothing changes.
    ///
    /// # Errors
    /// [`TrainError::UnknownParameter`] for a state entry naming no parameter of this optimiser,
    /// [`TrainError::MissingEntry`] for an incomplete entry, [`TrainError::ShapeMismatch`] for
    /// moments of the wrong shape, [`TrainError::BadCheckpoint`] for unrecognised keys.
    pub fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let mut found: HashMap<usize, [Option<&Tensor>; 3]> = HashMap::new();
        let mut lr = None;
        for (key, t) in state {
            if key == LR_KEY {
                lr = Some(
                    t.to_dtype(DType::F64)?
                        .flatten_all()?
                        .get(0)?
                        .to_scalar::<f64>()?,
                );
                continue;
            }
            let Some(rest) = key.strip_prefix(STATE_PREFIX) else {
                return Err(TrainError::BadCheckpoint(format!(
                    "unexpected optimiser key {key:?}"
                )));
            };
            let (name, slot) = if let Some(n) = rest.strip_suffix(EXP_AVG_SQ) {
                (n, 1)
            } else if let Some(n) = rest.strip_suffix(EXP_AVG) {
                (n, 0)
            } else if let Some(n) = rest.strip_suffix(STEP) {
                (n, 2)
            } else {
                return Err(TrainError::BadCheckpoint(format!(
                    "unexpected optimiser key {key:?}"
                )));
            };
            let &idx = self
                .by_name
                .get(name)
                .ok_or_else(|| TrainError::UnknownParameter(name.to_string()))?;
            found.entry(idx).or_default()[slot] = Some(t);
        }
        let mut restored = Vec::with_capacity(found.len());
        for (idx, slots) in found {
            let p = &self.params[idx];
            let key = format!("{STATE_PREFIX}{}", p.name);
            let [Some(m), Some(v), Some(step)] = slots else {
                let missing = [EXP_AVG, EXP_AVG_SQ, STEP]
                    .iter()
                    .zip(slots.iter())
                    .find(|(_, s)| s.is_none())
                    .map(|(suffix, _)| format!("{key}{suffix}"))
                    .unwrap_or(key);
                return Err(TrainError::MissingEntry(missing));
            };
            for (what, t) in [(EXP_AVG, m), (EXP_AVG_SQ, v)] {
                if t.dims() != p.var.dims() {
                    return Err(TrainError::ShapeMismatch {
                        what: format!("{key}{what}"),
                        expected: p.var.dims().to_vec(),
                        got: t.dims().to_vec(),
                    });
                }
            }
            let dev = p.var.device();
            let m = m.to_dtype(DType::F32)?.to_device(dev)?.detach();
            let v = v.to_dtype(DType::F32)?.to_device(dev)?.detach();
            let step = step
                .to_dtype(DType::I64)?
                .flatten_all()?
                .get(0)?
                .to_scalar::<i64>()?;
            if step < 1 {
                return Err(TrainError::BadCheckpoint(format!("{key}{STEP} = {step}")));
            }
            restored.push((idx, m, v, step as u64));
        }
        for p in self.params.iter_mut() {
            p.exp_avg = None;
            p.exp_avg_sq = None;
            p.step = 0;
        }
        for (idx, m, v, step) in restored {
            let p = &mut self.params[idx];
            p.exp_avg = Some(m);
            p.exp_avg_sq = Some(v);
            p.step = step;
        }
        if let Some(lr) = lr {
            self.cfg.lr = lr;
        }
        Ok(())
    }
}

/// Learning rate, weight decay, (β₁, β₂, ε) and the step number of one update.
type Hyper = (f64, f64, (f64, f64, f64), u64);

/// One AdamW update as a composition of candle ops (any device and dtype): returns the new
/// parameter (f32), first and second moments.
fn composed_update(
    theta: &Tensor,
    grad: &Tensor,
    exp_avg: Option<&Tensor>,
    exp_avg_sq: Option<&Tensor>,
    (lr, wd, (beta1, beta2, eps), step): Hyper,
) -> Result<(Tensor, Tensor, Tensor)> {
    let g = grad.detach().to_dtype(DType::F32)?;
    let mut theta = theta.detach().to_dtype(DType::F32)?;
    if wd != 0.0 {
        theta = theta.affine(1.0 - lr * wd, 0.0)?;
    }
    let exp_avg = match exp_avg {
        None => g.affine(1.0 - beta1, 0.0)?,
        Some(m) => (m + (&g - m)?.affine(1.0 - beta1, 0.0)?)?,
    };
    let g2 = g.sqr()?.affine(1.0 - beta2, 0.0)?;
    let exp_avg_sq = match exp_avg_sq {
        None => g2,
        Some(v) => (v.affine(beta2, 0.0)? + g2)?,
    };
    let bias_correction1 = 1.0 - beta1.powf(step as f64);
    let bias_correction2_sqrt = (1.0 - beta2.powf(step as f64)).sqrt();
    let step_size = lr / bias_correction1;
    let denom = exp_avg_sq
        .sqrt()?
        .affine(1.0 / bias_correction2_sqrt, eps)?;
    let update = (&exp_avg / denom)?.affine(-step_size, 0.0)?;
    Ok(((theta + update)?, exp_avg, exp_avg_sq))
}

/// The constants of one AdamW update, rounded to f32 as candle's `affine` rounds them.
struct AdamWConsts {
    /// `1 − lr·wd` (`None` without weight decay).
    decay: Option<f32>,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    /// `1 / √(1 − β₂ᵗ)`, `ε`, `−lr / (1 − β₁ᵗ)`.
    inv_bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

impl AdamWConsts {
    fn new((lr, wd, (beta1, beta2, eps), step): Hyper) -> Self {
        let bias_correction1 = 1.0 - beta1.powf(step as f64);
        let bias_correction2_sqrt = (1.0 - beta2.powf(step as f64)).sqrt();
        Self {
            decay: (wd != 0.0).then_some((1.0 - lr * wd) as f32),
            one_minus_beta1: (1.0 - beta1) as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            beta2: beta2 as f32,
            inv_bc2_sqrt: (1.0 / bias_correction2_sqrt) as f32,
            eps: eps as f32,
            neg_step_size: (-(lr / bias_correction1)) as f32,
        }
    }
}

/// Elements per parallel task of the fused update.
const UPDATE_CHUNK: usize = 1 << 14;

/// One AdamW update of an f32 CPU parameter in a single pass over its elements, computing
/// exactly what the composition of candle ops in [`AdamW::step`] computes (the same f32
/// operations in the same order, `x·a + 0` included, so the same bits): the decayed parameter,
/// the moments, the bias-corrected step. `None` when a tensor is not a contiguous f32 CPU
/// tensor of the parameter's size (the composition runs instead).
fn fused_update(
    theta: &Tensor,
    grad: &Tensor,
    exp_avg: Option<&Tensor>,
    exp_avg_sq: Option<&Tensor>,
    hyper: Hyper,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let k = &AdamWConsts::new(hyper);
    use candle_core::{CpuStorage, Storage};
    use rayon::prelude::*;
    if exp_avg.is_some() != exp_avg_sq.is_some() {
        return Ok(None);
    }
    let n = theta.elem_count();
    let (grad, m, v) = (
        grad.contiguous()?,
        exp_avg.map(|t| t.contiguous()).transpose()?,
        exp_avg_sq.map(|t| t.contiguous()).transpose()?,
    );
    let guards: Vec<_> = std::iter::once(theta)
        .chain(std::iter::once(&grad))
        .chain(m.as_ref())
        .chain(v.as_ref())
        .map(|t| t.storage_and_layout())
        .collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(4);
    for (storage, layout) in &guards {
        match (&**storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(d)), Some((lo, hi))) if hi - lo == n => {
                slices.push(&d[lo..hi])
            }
            _ => return Ok(None),
        }
    }
    let (th, g) = (slices[0], slices[1]);
    let moments = (slices.len() == 4).then(|| (slices[2], slices[3]));
    let (mut new_theta, mut new_m, mut new_v) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    new_theta
        .par_chunks_mut(UPDATE_CHUNK)
        .zip(new_m.par_chunks_mut(UPDATE_CHUNK))
        .zip(new_v.par_chunks_mut(UPDATE_CHUNK))
        .enumerate()
        .for_each(|(ci, ((ot, om), ov))| {
            let base = ci * UPDATE_CHUNK;
            for i in 0..ot.len() {
                let j = base + i;
                let gj = g[j];
                let t = match k.decay {
                    Some(d) => th[j] * d + 0.0,
                    None => th[j],
                };
                let g2 = (gj * gj) * k.one_minus_beta2 + 0.0;
                let (mj, vj) = match moments {
                    None => (gj * k.one_minus_beta1 + 0.0, g2),
                    Some((m, v)) => (
                        m[j] + ((gj - m[j]) * k.one_minus_beta1 + 0.0),
                        (v[j] * k.beta2 + 0.0) + g2,
                    ),
                };
                let denom = vj.sqrt() * k.inv_bc2_sqrt + k.eps;
                let update = (mj / denom) * k.neg_step_size + 0.0;
                ot[i] = t + update;
                om[i] = mj;
                ov[i] = vj;
            }
        });
    drop(slices);
    drop(guards);
    let (shape, dev) = (theta.shape(), theta.device());
    Ok(Some((
        Tensor::from_vec(new_theta, shape, dev)?,
        Tensor::from_vec(new_m, shape, dev)?,
        Tensor::from_vec(new_v, shape, dev)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass CPU update gives the composition's bits: parameter and both moments, first
    /// and later steps, with and without weight decay, on sizes around the parallel chunk.
    #[test]
    fn fused_update_equals_the_composition_bit_for_bit() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for n in [1usize, 7, UPDATE_CHUNK + 3] {
            for wd in [0.0, 0.1] {
                let mut theta = Tensor::randn(0f32, 1., n, &dev)?;
                let (mut m, mut v): (Option<Tensor>, Option<Tensor>) = (None, None);
                for step in 1..=3u64 {
                    let g = (Tensor::randn(0f32, 1e-3, n, &dev)? * (step as f64))?;
                    let hyper = (1e-3, wd, (0.9, 0.999, 1e-8), step);
                    let fused = fused_update(&theta, &g, m.as_ref(), v.as_ref(), hyper)?
                        .expect("CPU f32 tensors take the fused update");
                    let composed = composed_update(&theta, &g, m.as_ref(), v.as_ref(), hyper)?;
                    for (a, b) in [
                        (&fused.0, &composed.0),
                        (&fused.1, &composed.1),
                        (&fused.2, &composed.2),
                    ] {
                        let (a, b) = (a.to_vec1::<f32>()?, b.to_vec1::<f32>()?);
                        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "n {n}, wd {wd}, step {step}: the updates differ");
                    }
                    theta = fused.0;
                    (m, v) = (Some(fused.1), Some(fused.2));
                }
            }
        }
        Ok(())
    }
    use candle_core::Device;

    fn var(v: &[f32]) -> Var {
        Var::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn duplicates_are_rejected() {
        let a = var(&[1.0]);
        let g = ParamGroup::new("g", vec![("a".into(), a.clone()), ("b".into(), a)]);
        assert!(matches!(
            AdamW::new(vec![g], AdamWConfig::default()),
            Err(TrainError::DuplicateParameter(_))
        ));
        let g = ParamGroup::new(
            "g",
            vec![("a".into(), var(&[1.0])), ("a".into(), var(&[2.0]))],
        );
        assert!(AdamW::new(vec![g], AdamWConfig::default()).is_err());
    }

    #[test]
    fn bad_hyper_parameters_are_rejected() {
        assert!(AdamWConfig::default()
            .with_betas(1.0, 0.9)
            .validate()
            .is_err());
        assert!(AdamWConfig::default().with_lr(-1.0).validate().is_err());
        let g = ParamGroup::new("g", vec![("a".into(), var(&[1.0]))]).with_lr_scale(-2.0);
        assert!(AdamW::new(vec![g], AdamWConfig::default()).is_err());
    }

    #[test]
    fn params_without_grad_are_untouched() -> Result<()> {
        let a = var(&[1.0, 2.0]);
        let b = var(&[3.0]);
        let mut opt = AdamW::new(
            vec![ParamGroup::new(
                "g",
                vec![("a".into(), a.clone()), ("b".into(), b.clone())],
            )],
            AdamWConfig::default().with_lr(0.1),
        )?;
        let grads = a.as_tensor().sum_all()?.backward()?;
        opt.step(&grads)?;
        assert_eq!(b.as_tensor().to_vec1::<f32>()?, vec![3.0]); // no decay either
        assert_eq!(opt.step_count("b"), Some(0));
        assert_eq!(opt.step_count("a"), Some(1));
        let sd = opt.state_dict()?;
        assert!(sd.contains_key("state.a.exp_avg") && !sd.contains_key("state.b.exp_avg"));
        Ok(())
    }

    #[test]
    fn group_lr_scale_and_decay_apply() -> Result<()> {
        // Zero gradient: m = v = 0, so the only change is the decay θ(1 − lr·λ).
        let a = var(&[1.0]);
        let b = var(&[1.0]);
        let c = var(&[1.0]);
        let groups = vec![
            ParamGroup::new("a", vec![("a".into(), a.clone())]),
            ParamGroup::new("b", vec![("b".into(), b.clone())]).with_lr_scale(2.0),
            ParamGroup::new("c", vec![("c".into(), c.clone())]).with_weight_decay(0.0),
        ];
        let mut opt = AdamW::new(groups, AdamWConfig::default().with_lr(0.5))?;
        let mut grads = GradStore::default();
        for v in [&a, &b, &c] {
            grads.insert(v.as_tensor(), v.as_tensor().zeros_like()?);
        }
        opt.step(&grads)?;
        assert_eq!(
            a.as_tensor().to_vec1::<f32>()?,
            vec![(1.0 - 0.5 * 0.1) as f32]
        );
        assert_eq!(
            b.as_tensor().to_vec1::<f32>()?,
            vec![(1.0 - 1.0 * 0.1) as f32]
        );
        assert_eq!(c.as_tensor().to_vec1::<f32>()?, vec![1.0]);
        Ok(())
    }

    #[test]
    fn load_state_dict_rejects_bad_entries() -> Result<()> {
        let a = var(&[1.0, 2.0]);
        let mut opt = AdamW::from_map(
            HashMap::from([("a".to_string(), a.clone())]),
            AdamWConfig::default(),
        )?;
        opt.step(&a.as_tensor().sum_all()?.backward()?)?;
        let good = opt.state_dict()?;

        let mut unknown = good.clone();
        unknown.insert("state.zz.step".into(), Tensor::new(1i64, &Device::Cpu)?);
        assert!(matches!(
            opt.load_state_dict(&unknown),
            Err(TrainError::UnknownParameter(_))
        ));
        let mut missing = good.clone();
        missing.remove("state.a.exp_avg_sq");
        assert!(matches!(
            opt.load_state_dict(&missing),
            Err(TrainError::MissingEntry(_))
        ));
        let mut shape = good.clone();
        shape.insert(
            "state.a.exp_avg".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu)?,
        );
        assert!(matches!(
            opt.load_state_dict(&shape),
            Err(TrainError::ShapeMismatch { .. })
        ));
        // Nothing changed by the failed loads.
        assert_eq!(opt.step_count("a"), Some(1));
        opt.load_state_dict(&good)?;
        assert_eq!(opt.step_count("a"), Some(1));
        Ok(())
    }
}
