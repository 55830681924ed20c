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
            let g = grad.detach().to_dtype(DType::F32)?;
            let mut theta = p.var.as_tensor().detach().to_dtype(DType::F32)?;
            let step = p.step + 1;
            if wd != 0.0 {
                theta = theta.affine(1.0 - lr * wd, 0.0)?;
            }
            let exp_avg = match &p.exp_avg {
                None => g.affine(1.0 - beta1, 0.0)?,
                Some(m) => (m + (&g - m)?.affine(1.0 - beta1, 0.0)?)?,
            };
            let g2 = g.sqr()?.affine(1.0 - beta2, 0.0)?;
            let exp_avg_sq = match &p.exp_avg_sq {
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
            let theta = (theta + update)?;
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

#[cfg(test)]
mod tests {
    use super::*;
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
