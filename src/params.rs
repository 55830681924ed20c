//! Where a model's parameters come from: frozen tensors, and trainable variables initialised from a
//! checkpoint where the shapes match (the reference's `load_from` semantics) or freshly otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use masam_nn::SeededVarMap;

/// Where one parameter's initial value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provenance {
    /// Copied from the checkpoint (name and shape matched).
    Checkpoint,
    /// Drawn from the layer's default initialiser (seeded).
    Fresh,
}

/// A `VarBuilder` backend for **trainable** parameters: every requested tensor becomes a
/// [`candle_core::Var`] in a [`SeededVarMap`]. Its initial value is the checkpoint tensor of the same
/// name when the shapes match (what PyTorch's failed strict `load_state_dict` leaves behind in the
/// reference, `reference-spec.md` §1.11), and otherwise a fresh draw from the layer's initialiser.
///
/// ```
/// use std::collections::HashMap;
/// use candle_core::{DType, Device, Tensor};
/// use masam_adapter::params::{CheckpointInit, Provenance};
/// use masam_nn::{linear, SeededVarMap};
/// # fn main() -> candle_core::Result<()> {
/// let mut ckpt = HashMap::new();
/// ckpt.insert("a.weight".to_string(), Tensor::ones((2, 3), DType::F32, &Device::Cpu)?);
/// ckpt.insert("b.weight".to_string(), Tensor::ones((9, 9), DType::F32, &Device::Cpu)?);
/// let init = CheckpointInit::new(SeededVarMap::new(0), ckpt);
/// let vb = init.var_builder(DType::F32, &Device::Cpu);
/// let _a = linear(3, 2, vb.pp("a"))?; // weight from the checkpoint, bias fresh
/// let _b = linear(3, 2, vb.pp("b"))?; // shape mismatch: fresh
/// let p = init.provenance();
/// assert_eq!(p["a.weight"], Provenance::Checkpoint);
/// assert_eq!(p["a.bias"], Provenance::Fresh);
/// assert_eq!(p["b.weight"], Provenance::Fresh);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CheckpointInit {
    vars: SeededVarMap,
    checkpoint: Arc<HashMap<String, Tensor>>,
    provenance: Arc<Mutex<BTreeMap<String, Provenance>>>,
}

impl CheckpointInit {
    /// Trainable variables go into `vars`; initial values are looked up in `checkpoint`.
    pub fn new(vars: SeededVarMap, checkpoint: HashMap<String, Tensor>) -> Self {
        Self {
            vars,
            checkpoint: Arc::new(checkpoint),
            provenance: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The variables created so far.
    pub fn vars(&self) -> &SeededVarMap {
        &self.vars
    }

    /// A `VarBuilder` over this backend.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Name → where its initial value came from, for every variable created through this backend.
    pub fn provenance(&self) -> BTreeMap<String, Provenance> {
        self.provenance.lock().unwrap().clone()
    }
}

impl SimpleBackend for CheckpointInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if self.vars.get(name).is_none() {
            if let Some(t) = self.checkpoint.get(name) {
                if t.shape() == &s {
                    let t = t.to_dtype(dtype)?.to_device(dev)?;
                    self.vars.insert(name, &t)?;
                    self.provenance
                        .lock()
                        .unwrap()
                        .insert(name.to_string(), Provenance::Checkpoint);
                }
            }
        }
        if self.vars.get(name).is_none() {
            self.provenance
                .lock()
                .unwrap()
                .insert(name.to_string(), Provenance::Fresh);
        }
        SimpleBackend::get(&self.vars, s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        SimpleBackend::get_unchecked(&self.vars, name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.get(name).is_some() || self.checkpoint.contains_key(name)
    }
}

/// A `VarBuilder` backend for **frozen** parameters: plain tensors by name (never `Var`s, so they
/// never receive gradients), with a shape check that names the key and both shapes.
#[derive(Clone)]
pub struct FrozenTensors {
    tensors: Arc<HashMap<String, Tensor>>,
}

impl FrozenTensors {
    /// Serves `tensors` by name.
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self {
            tensors: Arc::new(tensors),
        }
    }

    /// A `VarBuilder` over these tensors.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }
}

impl SimpleBackend for FrozenTensors {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "frozen tensor `{name}` has shape {:?}, the model expects {:?}",
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("missing frozen tensor `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
