//! FacT on a model you did not write: a `VarBuilder` backend that serves `W + s·ΔW`.
//!
//! Most candle models (every ViT in candle-transformers) keep their layers private and read
//! their weights once, through a [`VarBuilder`], when they are built. [`FactBackend`] sits
//! between such a model and its checkpoint: every tensor is passed through unchanged (and
//! detached, so the pretrained weights stay frozen) except the projection weights selected by a
//! [`ProjectionMap`], which are served as `W + s·ΔW` with `ΔW = V·S·U` computed from the
//! [`Fact`] parameters. In [`ServeMode::Train`] the increment keeps its graph, so a loss computed
//! with the model sends gradients to U, V and the cores; in [`ServeMode::Merged`] the sum is a
//! plain tensor, for inference at the cost of the original model.
//!
//! Two things to know:
//!
//! - The weights are computed when the model is **built**. After an optimiser step changes the
//!   factors, build the model again from the same backend (cheap: the frozen tensors are cached
//!   and shared, only the increments are recomputed).
//! - Gradients only reach the factors if every op between the weight and the loss records a
//!   backward. candle 0.11's `softmax_last_dim` and the fused path of `candle_nn::LayerNorm`
//!   record none; [`crate::gradcheck`] finds out, and [`crate::hosts`] has models that train.
//!
//! FacT's dropout acts on activations, so it has no weight form: the served increment is the
//! evaluation-mode one (as with dropout 0).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use masam_fact::backend::{FactBackend, ProjectionMap};
//! use masam_fact::{Fact, FactConfig, Projection};
//! use masam_nn::SeededVarMap;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! // A "checkpoint" with one fused qkv projection (C = 4), laid out like DINOv2's.
//! let w = Tensor::randn(0f32, 1., (12, 4), &dev)?;
//! let base = VarBuilder::from_tensors(
//!     [("blocks.0.attn.qkv.weight".to_string(), w.clone())].into(),
//!     DType::F32,
//!     &dev,
//! );
//! let params = SeededVarMap::new(0);
//! params.insert("FacTv.weight", &Tensor::ones((4, 2), DType::F32, &dev)?)?;
//! let fact = Fact::new(&FactConfig::ma_sam().with_rank(2), 4, 1, params.var_builder(DType::F32, &dev))?;
//! let backend = FactBackend::new(base, &fact, ProjectionMap::dinov2());
//! let vb = backend.var_builder();
//! let served = vb.get((12, 4), "blocks.0.attn.qkv.weight")?;
//! let expected = (&w + fact.qkv(0)?.unwrap().delta_weight(12, DType::F32)?)?;
//! assert_eq!(served.to_vec2::<f32>()?, expected.to_vec2::<f32>()?);
//! // q and v of block 0 were served; nothing adapted was left out.
//! backend.check_coverage()?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::error::{FactError, Result};
use crate::fact::Fact;
use crate::projection::Projection;

/// Which projections of which block a weight holds: `parts` lists each adapted projection with
/// the first output row it occupies (0 for a plain projection; `0`, `C`, `2C` for q, k, v of a
/// fused qkv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightTarget {
    /// Block (layer) index.
    pub block: usize,
    /// `(projection, first row)` pairs.
    pub parts: Vec<(Projection, usize)>,
}

#[derive(Debug, Clone)]
struct Rule {
    prefix: String,
    suffix: String,
    /// Projections, the k-th occupying rows `[k·C, (k+1)·C)` when there are several.
    projections: Vec<Projection>,
}

/// Tensor paths → adapted projections, as templates with one `{i}` for the block index.
///
/// Ready-made maps cover the weight names of candle-transformers' ViT (Hugging Face
/// `ViTForImageClassification`), DINOv2 (timm names, fused qkv) and CLIP's vision tower. Paths
/// must match the full tensor name the model asks for; [`ProjectionMap::with_root`] prepends a
/// prefix (e.g. when a model is built under `vb.pp("backbone")`).
///
/// ```
/// use masam_fact::backend::{ProjectionMap, WeightTarget};
/// use masam_fact::Projection;
/// let map = ProjectionMap::hf_vit();
/// let t = map.target("vit.encoder.layer.3.attention.attention.value.weight", 768);
/// assert_eq!(t, Some(WeightTarget { block: 3, parts: vec![(Projection::V, 0)] }));
/// assert_eq!(map.target("vit.encoder.layer.3.attention.attention.value.bias", 768), None);
/// let qkv = ProjectionMap::dinov2().target("blocks.1.attn.qkv.weight", 384).unwrap();
/// assert_eq!(qkv.parts, vec![(Projection::Q, 0), (Projection::K, 384), (Projection::V, 768)]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProjectionMap {
    rules: Vec<Rule>,
}

impl ProjectionMap {
    /// An empty map (nothing is adapted).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a weight holding one projection. `template` contains `{i}` exactly once.
    ///
    /// # Panics
    /// When `template` does not contain `{i}` exactly once (a programming error in a constant).
    /// [`ProjectionMap::try_with_fused`] reports it instead.
    pub fn with(self, template: &str, projection: Projection) -> Self {
        self.with_fused(template, &[projection])
    }

    /// Adds a fused weight whose k-th block of C output rows is `projections[k]` (for a fused
    /// qkv: `&[Q, K, V]`).
    ///
    /// # Panics
    /// As [`ProjectionMap::with`].
    pub fn with_fused(self, template: &str, projections: &[Projection]) -> Self {
        match self.try_with_fused(template, projections) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`ProjectionMap::with_fused`] returning an error for a bad template.
    pub fn try_with_fused(mut self, template: &str, projections: &[Projection]) -> Result<Self> {
        let mut pieces = template.split("{i}");
        let (Some(prefix), Some(suffix), None) = (pieces.next(), pieces.next(), pieces.next())
        else {
            return Err(FactError::Mapping(format!(
                "template `{template}` must contain `{{i}}` exactly once"
            )));
        };
        if projections.is_empty() {
            return Err(FactError::Mapping(format!(
                "template `{template}` lists no projection"
            )));
        }
        self.rules.push(Rule {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            projections: projections.to_vec(),
        });
        Ok(self)
    }

    /// The same map with `root.` prepended to every template (`root` without the final dot).
    pub fn with_root(mut self, root: &str) -> Self {
        if !root.is_empty() {
            for r in &mut self.rules {
                r.prefix = format!("{root}.{}", r.prefix);
            }
        }
        self
    }

    /// candle-transformers' `models::vit::Model` (Hugging Face `ViTForImageClassification`
    /// names): `vit.encoder.layer.{i}.attention.attention.{query,key,value}.weight`,
    /// `…attention.output.dense.weight` (proj), `…intermediate.dense.weight` (fc1) and
    /// `…layer.{i}.output.dense.weight` (fc2).
    pub fn hf_vit() -> Self {
        let l = "vit.encoder.layer.{i}";
        Self::new()
            .with(
                &format!("{l}.attention.attention.query.weight"),
                Projection::Q,
            )
            .with(
                &format!("{l}.attention.attention.key.weight"),
                Projection::K,
            )
            .with(
                &format!("{l}.attention.attention.value.weight"),
                Projection::V,
            )
            .with(
                &format!("{l}.attention.output.dense.weight"),
                Projection::Proj,
            )
            .with(&format!("{l}.intermediate.dense.weight"), Projection::Fc1)
            .with(&format!("{l}.output.dense.weight"), Projection::Fc2)
    }

    /// DINOv2 / timm ViTs (candle-transformers' `dinov2`, `dinov2reg4`, `beit`):
    /// `blocks.{i}.attn.qkv.weight` (fused, q rows `[0, C)`, k `[C, 2C)`, v `[2C, 3C)`),
    /// `blocks.{i}.attn.proj.weight`, `blocks.{i}.mlp.fc1.weight`, `blocks.{i}.mlp.fc2.weight`.
    pub fn dinov2() -> Self {
        Self::new()
            .with_fused(
                "blocks.{i}.attn.qkv.weight",
                &[Projection::Q, Projection::K, Projection::V],
            )
            .with("blocks.{i}.attn.proj.weight", Projection::Proj)
            .with("blocks.{i}.mlp.fc1.weight", Projection::Fc1)
            .with("blocks.{i}.mlp.fc2.weight", Projection::Fc2)
    }

    /// CLIP's vision tower as built by candle-transformers' `clip::ClipModel` (under
    /// `vision_model`): `vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.weight`,
    /// `…mlp.fc1.weight`, `…mlp.fc2.weight`. For a `ClipVisionTransformer` built on its own,
    /// use [`ProjectionMap::clip_encoder`] with the right root.
    pub fn clip_vision() -> Self {
        Self::clip_encoder().with_root("vision_model")
    }

    /// CLIP encoder layers without a root: `encoder.layers.{i}.self_attn.q_proj.weight`, ….
    pub fn clip_encoder() -> Self {
        let l = "encoder.layers.{i}";
        Self::new()
            .with(&format!("{l}.self_attn.q_proj.weight"), Projection::Q)
            .with(&format!("{l}.self_attn.k_proj.weight"), Projection::K)
            .with(&format!("{l}.self_attn.v_proj.weight"), Projection::V)
            .with(&format!("{l}.self_attn.out_proj.weight"), Projection::Proj)
            .with(&format!("{l}.mlp.fc1.weight"), Projection::Fc1)
            .with(&format!("{l}.mlp.fc2.weight"), Projection::Fc2)
    }

    /// The projections held by the tensor at `path`, for a model of width `dim`.
    pub fn target(&self, path: &str, dim: usize) -> Option<WeightTarget> {
        self.rules.iter().find_map(|r| {
            let rest = path.strip_prefix(&r.prefix)?;
            let index = rest.strip_suffix(&r.suffix)?;
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let block = index.parse().ok()?;
            let parts = r
                .projections
                .iter()
                .enumerate()
                .map(|(k, p)| (*p, k * dim))
                .collect();
            Some(WeightTarget { block, parts })
        })
    }
}

/// What [`FactBackend`] serves for an adapted weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServeMode {
    /// `W.detach() + s·ΔW`, with the graph of ΔW: gradients reach the FacT parameters.
    #[default]
    Train,
    /// `(W + s·ΔW).detach()`: a plain tensor, for inference with no overhead.
    Merged,
}

struct Inner<'a> {
    base: VarBuilder<'a>,
    fact: Fact,
    map: ProjectionMap,
    mode: ServeMode,
    trainable: Vec<(String, VarBuilder<'a>)>,
    cache: Mutex<HashMap<(String, DType), Tensor>>,
    served: Mutex<BTreeSet<(usize, Projection)>>,
}

/// A [`SimpleBackend`] serving a base model's tensors with FacT increments added to the weights
/// selected by a [`ProjectionMap`] (see the [module docs](self)).
///
/// - Base tensors are served detached (frozen) and cached, so building a model again is cheap.
/// - Tensors under a prefix registered with [`FactBackend::with_trainable`] (a new classifier
///   head, say) come from another builder, typically a `VarMap`, and keep their graph.
/// - [`FactBackend::check_coverage`] reports adapted (block, projection) pairs that no model
///   has asked for yet: a map that does not match the model's names is an error, not a silent
///   no-op.
///
/// Cloning is cheap and clones share the cache and the coverage record.
#[derive(Clone)]
pub struct FactBackend<'a> {
    inner: Arc<Inner<'a>>,
}

impl std::fmt::Debug for FactBackend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactBackend")
            .field("mode", &self.inner.mode)
            .field("map", &self.inner.map)
            .field(
                "trainable",
                &self
                    .inner
                    .trainable
                    .iter()
                    .map(|(p, _)| p)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'.')
}

impl<'a> FactBackend<'a> {
    /// Serves `base` (a builder at the model's root) with the increments of `fact` added to
    /// the weights that `map` selects, in [`ServeMode::Train`].
    pub fn new(base: VarBuilder<'a>, fact: &Fact, map: ProjectionMap) -> Self {
        Self {
            inner: Arc::new(Inner {
                base,
                fact: fact.clone(),
                map,
                mode: ServeMode::Train,
                trainable: Vec::new(),
                cache: Mutex::new(HashMap::new()),
                served: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    fn rebuild(&self, f: impl FnOnce(&mut Vec<(String, VarBuilder<'a>)>, &mut ServeMode)) -> Self {
        let i = &self.inner;
        let mut trainable = i.trainable.clone();
        let mut mode = i.mode;
        f(&mut trainable, &mut mode);
        Self {
            inner: Arc::new(Inner {
                base: i.base.clone(),
                fact: i.fact.clone(),
                map: i.map.clone(),
                mode,
                trainable,
                cache: Mutex::new(i.cache.lock().expect("cache lock").clone()),
                served: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// The same backend serving in `mode` (it shares nothing mutable with `self` but the
    /// cached frozen tensors' storage).
    pub fn with_mode(&self, mode: ServeMode) -> Self {
        self.rebuild(|_, m| *m = mode)
    }

    /// The same backend in [`ServeMode::Merged`].
    pub fn merged(&self) -> Self {
        self.with_mode(ServeMode::Merged)
    }

    /// Serves the tensors at or under `prefix` (a path such as `classifier`) from `vb`
    /// instead of the base, keeping their graph (in [`ServeMode::Merged`] they are detached).
    /// `vb` is asked for the full path, so with a `VarMap` the variables are named
    /// `prefix.weight`, ….
    pub fn with_trainable(&self, prefix: &str, vb: VarBuilder<'a>) -> Self {
        let prefix = prefix.trim_end_matches('.').to_string();
        self.rebuild(|t, _| t.push((prefix, vb)))
    }

    /// The serving mode.
    pub fn mode(&self) -> ServeMode {
        self.inner.mode
    }

    /// The FacT parameters whose increments are served.
    pub fn fact(&self) -> &Fact {
        &self.inner.fact
    }

    /// A `VarBuilder` over this backend with the base builder's dtype and device.
    pub fn var_builder(&self) -> VarBuilder<'a> {
        let (dtype, dev) = (self.inner.base.dtype(), self.inner.base.device().clone());
        VarBuilder::from_backend(Box::new(self.clone()), dtype, dev)
    }

    /// The (block, projection) pairs served with an increment so far.
    pub fn served(&self) -> Vec<(usize, Projection)> {
        self.inner
            .served
            .lock()
            .expect("served lock")
            .iter()
            .copied()
            .collect()
    }

    /// Fails with [`FactError::Unserved`] when some adapted (block, projection) pair of the
    /// FacT configuration has not been served yet; call it after building the model.
    pub fn check_coverage(&self) -> Result<()> {
        let served = self.inner.served.lock().expect("served lock").clone();
        let fact = &self.inner.fact;
        let missing: Vec<String> = (0..fact.depth())
            .flat_map(|i| {
                fact.config()
                    .sorted_targets()
                    .into_iter()
                    .map(move |p| (i, p))
            })
            .filter(|k| !served.contains(k))
            .map(|(i, p)| format!("block {i} {}", p.name()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(FactError::Unserved(missing))
        }
    }

    /// The tensor the backend serves for `path` when the base holds `weight` there: `weight`
    /// itself (detached) when the map selects no adapted projection, `W + s·ΔW` otherwise.
    pub fn adapt(&self, path: &str, weight: &Tensor) -> Result<Tensor> {
        let inner = &self.inner;
        let fact = &inner.fact;
        let w = weight.detach();
        let Some(target) = inner.map.target(path, fact.dim()) else {
            return Ok(w);
        };
        let parts: Vec<_> = target
            .parts
            .into_iter()
            .filter(|(p, _)| fact.config().adapts(*p))
            .collect();
        if parts.is_empty() {
            return Ok(w);
        }
        if target.block >= fact.depth() {
            return Err(FactError::BlockOutOfRange {
                block: target.block,
                depth: fact.depth(),
            });
        }
        let hook = fact.hook(target.block, &parts)?;
        let (out, inp) = w.dims2()?;
        if inp != hook.in_features() || out < hook.min_out_features() {
            return Err(FactError::ShapeMismatch {
                what: path.to_string(),
                expected: vec![hook.min_out_features(), hook.in_features()],
                got: vec![out, inp],
            });
        }
        let dw = hook.delta_weight(out, w.dtype())?.to_device(w.device())?;
        let adapted = match inner.mode {
            ServeMode::Train => (w + dw)?,
            ServeMode::Merged => (w + dw.detach())?.detach(),
        };
        let mut served = inner.served.lock().expect("served lock");
        for (p, _) in parts {
            served.insert((target.block, p));
        }
        Ok(adapted)
    }

    fn trainable(&self, path: &str) -> Option<&VarBuilder<'a>> {
        self.inner
            .trainable
            .iter()
            .rev()
            .find(|(p, _)| under(path, p))
            .map(|(_, vb)| vb)
    }

    fn base_tensor(
        &self,
        path: &str,
        dtype: DType,
        fetch: impl FnOnce() -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let key = (path.to_string(), dtype);
        if let Some(t) = self.inner.cache.lock().expect("cache lock").get(&key) {
            return Ok(t.clone());
        }
        let t = fetch()?.detach();
        self.inner
            .cache
            .lock()
            .expect("cache lock")
            .insert(key, t.clone());
        Ok(t)
    }

    fn finish(&self, path: &str, t: Tensor, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.adapt(path, &t).map_err(candle_core::Error::wrap)?;
        t.to_device(dev)
    }
}

impl SimpleBackend for FactBackend<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(vb) = self.trainable(name) {
            let t = vb.get_with_hints_dtype(s, name, h, dtype)?.to_device(dev)?;
            return Ok(match self.inner.mode {
                ServeMode::Train => t,
                ServeMode::Merged => t.detach(),
            });
        }
        let t = self.base_tensor(name, dtype, || {
            self.inner.base.get_with_hints_dtype(s, name, h, dtype)
        })?;
        self.finish(name, t, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(vb) = self.trainable(name) {
            let t = vb.get_unchecked_dtype(name, dtype)?.to_device(dev)?;
            return Ok(match self.inner.mode {
                ServeMode::Train => t,
                ServeMode::Merged => t.detach(),
            });
        }
        let t = self.base_tensor(name, dtype, || {
            self.inner.base.get_unchecked_dtype(name, dtype)
        })?;
        self.finish(name, t, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        match self.trainable(name) {
            Some(vb) => vb.contains_tensor(name),
            None => self.inner.base.contains_tensor(name),
        }
    }
}

/// Merges FacT into a checkpoint: every tensor of `tensors` that `map` selects becomes
/// `W + s·ΔW` (detached), the others are returned unchanged. Save the result with
/// `candle_core::safetensors::save` and load it into the unmodified model: no masam code is
/// needed at inference.
pub fn merge_tensors(
    tensors: &HashMap<String, Tensor>,
    fact: &Fact,
    map: &ProjectionMap,
) -> Result<HashMap<String, Tensor>> {
    let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
    let backend = FactBackend::new(vb, fact, map.clone()).merged();
    tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), backend.adapt(k, t)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_names_only() {
        let map = ProjectionMap::hf_vit();
        assert_eq!(
            map.target("vit.encoder.layer.12.output.dense.weight", 8),
            Some(WeightTarget {
                block: 12,
                parts: vec![(Projection::Fc2, 0)]
            })
        );
        // attention.output.dense is proj, not fc2.
        assert_eq!(
            map.target("vit.encoder.layer.0.attention.output.dense.weight", 8)
                .unwrap()
                .parts,
            vec![(Projection::Proj, 0)]
        );
        for bad in [
            "vit.encoder.layer..output.dense.weight",
            "vit.encoder.layer.x.output.dense.weight",
            "vit.encoder.layer.1.2.output.dense.weight",
            "xvit.encoder.layer.1.output.dense.weight",
        ] {
            assert_eq!(map.target(bad, 8), None, "{bad}");
        }
        let clip = ProjectionMap::clip_vision();
        assert!(clip
            .target("vision_model.encoder.layers.0.self_attn.q_proj.weight", 8)
            .is_some());
        assert!(clip
            .target("text_model.encoder.layers.0.self_attn.q_proj.weight", 8)
            .is_none());
        assert!(matches!(
            ProjectionMap::new().try_with_fused("blocks.attn.qkv.weight", &[Projection::Q]),
            Err(FactError::Mapping(_))
        ));
        assert!(under("classifier.weight", "classifier"));
        assert!(!under("classifier2.weight", "classifier"));
    }
}
