//! Atomic, resumable training checkpoints in one safetensors file.
//!
//! A checkpoint holds the named trainable tensors, the optimiser state, the schedule step, named
//! RNG stream states and a JSON config blob. It is written to a temporary file in the target's
//! directory, flushed to disk (`fsync`), then renamed over the target ([`masam_fs::atomic_write`]), so a crash or an error at
//! any point leaves either the previous file or the new one, never a half-written file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Result, TrainError};
use crate::loss_scale::LossScaleState;
use crate::optimizer::AdamW;
use crate::rng_state::RngState;

const FORMAT: &str = "masam-train/checkpoint";
const VERSION: &str = "1";
/// Metadata key of the optional loss-scaler state (absent: no scaler).
const LOSS_SCALE_KEY: &str = "loss_scale";
const PARAM_PREFIX: &str = "param/";
const OPTIM_PREFIX: &str = "optim/";

/// Everything needed to resume training bit-exactly.
///
/// ```
/// use std::collections::BTreeMap;
/// use candle_core::{Device, Var};
/// use masam_train::{AdamW, AdamWConfig, ParamGroup, TrainingState};
/// # fn main() -> masam_train::Result<()> {
/// let w = Var::new(&[1f32, 2.], &Device::Cpu)?;
/// let mut opt = AdamW::new(vec![ParamGroup::new("all", vec![("w".into(), w.clone())])],
///                          AdamWConfig::default())?;
/// opt.step(&w.as_tensor().sum_all()?.backward()?)?;
/// let state = TrainingState::capture(&opt, 1, BTreeMap::new(), serde_json::json!({"lr": 1e-3}))?;
/// let path = std::env::temp_dir().join(format!("masam-doc-{}.safetensors", std::process::id()));
/// state.save(&path)?;
/// let back = TrainingState::load(&path, &Device::Cpu)?;
/// assert_eq!(back.step, 1);
/// back.restore(&mut opt)?;
/// # std::fs::remove_file(&path).unwrap();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TrainingState {
    /// Trainable tensors by parameter name.
    pub params: HashMap<String, Tensor>,
    /// Optimiser state, as [`AdamW::state_dict`].
    pub optimizer: HashMap<String, Tensor>,
    /// The schedule step: the 0-based index of the next optimiser step.
    pub step: u64,
    /// Named RNG streams (data order, augmentation, dropout, ...).
    pub rngs: BTreeMap<String, RngState>,
    /// The run configuration (hyper-parameters), stored as JSON.
    pub config: serde_json::Value,
    /// The f16 loss scaler's state (`None` for f32 and bf16 runs, and in files written before
    /// mixed precision existed).
    pub loss_scale: Option<LossScaleState>,
}

impl TrainingState {
    /// Snapshots the optimiser's parameters and state (copies, so training can go on).
    pub fn capture(
        opt: &AdamW,
        step: u64,
        rngs: BTreeMap<String, RngState>,
        config: serde_json::Value,
    ) -> Result<Self> {
        let params = opt
            .named_vars()
            .map(|(n, v)| Ok((n.to_string(), v.as_tensor().detach().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self {
            params,
            optimizer: opt.state_dict()?,
            step,
            rngs,
            config,
            loss_scale: None,
        })
    }

    /// Copies the stored parameters into `opt`'s variables and restores its state. Every
    /// variable of `opt` must be present with the same shape; checks everything before changing
    /// anything.
    pub fn restore(&self, opt: &mut AdamW) -> Result<()> {
        let named: Vec<(String, Var)> = opt
            .named_vars()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        // Validate the optimiser state on a scratch copy first, so a bad state leaves `opt` and
        // the variables untouched.
        let mut scratch = opt.clone();
        scratch.load_state_dict(&self.optimizer)?;
        self.restore_params(named.iter().map(|(n, v)| (n.as_str(), v)))?;
        *opt = scratch;
        Ok(())
    }

    /// Copies the stored parameters into `vars` (by name). Every name must be stored, with the
    /// variable's shape; all are checked before any is written.
    pub fn restore_params<'a>(
        &self,
        vars: impl IntoIterator<Item = (&'a str, &'a Var)>,
    ) -> Result<()> {
        let mut plan = Vec::new();
        for (name, var) in vars {
            let t = self
                .params
                .get(name)
                .ok_or_else(|| TrainError::MissingEntry(format!("{PARAM_PREFIX}{name}")))?;
            if t.dims() != var.dims() {
                return Err(TrainError::ShapeMismatch {
                    what: format!("{PARAM_PREFIX}{name}"),
                    expected: var.dims().to_vec(),
                    got: t.dims().to_vec(),
                });
            }
            plan.push((var, t.to_dtype(var.dtype())?.to_device(var.device())?));
        }
        for (var, t) in plan {
            var.set(&t)?;
        }
        Ok(())
    }

    /// Encodes the state as a safetensors buffer (tensors `param/…`, `optim/…`; metadata
    /// `format`, `version`, `step`, `rngs`, `config`, and `loss_scale` when there is one).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut views = Vec::with_capacity(self.params.len() + self.optimizer.len());
        for (prefix, map) in [
            (PARAM_PREFIX, &self.params),
            (OPTIM_PREFIX, &self.optimizer),
        ] {
            for (name, t) in map {
                views.push((format!("{prefix}{name}"), HostTensor::new(name, t)?));
            }
        }
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("rngs".to_string(), serde_json::to_string(&self.rngs)?),
            ("config".to_string(), serde_json::to_string(&self.config)?),
        ]);
        if let Some(ls) = &self.loss_scale {
            meta.insert(LOSS_SCALE_KEY.to_string(), serde_json::to_string(ls)?);
        }
        Ok(safetensors::serialize(views, Some(meta))?)
    }

    /// Decodes a buffer made by [`TrainingState::to_bytes`], placing tensors on `device`.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or_else(|| TrainError::BadCheckpoint("no metadata".into()))?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| TrainError::BadCheckpoint(format!("metadata {k:?} missing")))
        };
        if get("format")? != FORMAT {
            return Err(TrainError::BadCheckpoint(format!(
                "format {:?}, expected {FORMAT:?}",
                get("format")?
            )));
        }
        if get("version")? != VERSION {
            return Err(TrainError::BadCheckpoint(format!(
                "version {:?}, expected {VERSION:?}",
                get("version")?
            )));
        }
        let step = get("step")?
            .parse::<u64>()
            .map_err(|_| TrainError::BadCheckpoint(format!("bad step {:?}", meta["step"])))?;
        let rngs = serde_json::from_str(get("rngs")?)?;
        let config = serde_json::from_str(get("config")?)?;
        let loss_scale = match meta.get(LOSS_SCALE_KEY) {
            Some(s) => Some(serde_json::from_str(s)?),
            None => None,
        };
        let mut params = HashMap::new();
        let mut optimizer = HashMap::new();
        for (key, t) in candle_core::safetensors::load_buffer(bytes, device)? {
            if let Some(n) = key.strip_prefix(PARAM_PREFIX) {
                params.insert(n.to_string(), t);
            } else if let Some(n) = key.strip_prefix(OPTIM_PREFIX) {
                optimizer.insert(n.to_string(), t);
            } else {
                return Err(TrainError::BadCheckpoint(format!(
                    "unexpected tensor {key:?}"
                )));
            }
        }
        Ok(Self {
            params,
            optimizer,
            step,
            rngs,
            config,
            loss_scale,
        })
    }

    /// Writes the state to `path` atomically (see [`atomic_write`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        atomic_write(path, &bytes)
    }

    /// Reads a state written by [`TrainingState::save`].
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_bytes(&bytes, device)
    }
}

/// A tensor copied to host bytes, so that serialisation cannot fail half-way.
struct HostTensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    fn new(name: &str, t: &Tensor) -> Result<Self> {
        let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
        fn le<T, const N: usize>(v: Vec<T>, f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.into_iter().flat_map(f).collect()
        }
        let (dtype, bytes) = match t.dtype() {
            DType::F32 => (
                safetensors::Dtype::F32,
                le(flat.to_vec1::<f32>()?, f32::to_le_bytes),
            ),
            DType::F64 => (
                safetensors::Dtype::F64,
                le(flat.to_vec1::<f64>()?, f64::to_le_bytes),
            ),
            DType::I64 => (
                safetensors::Dtype::I64,
                le(flat.to_vec1::<i64>()?, i64::to_le_bytes),
            ),
            DType::U32 => (
                safetensors::Dtype::U32,
                le(flat.to_vec1::<u32>()?, u32::to_le_bytes),
            ),
            DType::U8 => (safetensors::Dtype::U8, flat.to_vec1::<u8>()?),
            DType::F16 => (
                safetensors::Dtype::F16,
                le(flat.to_vec1::<half::f16>()?, |x| x.to_bits().to_le_bytes()),
            ),
            DType::BF16 => (
                safetensors::Dtype::BF16,
                le(flat.to_vec1::<half::bf16>()?, |x| x.to_bits().to_le_bytes()),
            ),
            dtype => {
                return Err(TrainError::UnsupportedDType {
                    what: name.to_string(),
                    dtype,
                })
            }
        };
        Ok(Self {
            dtype,
            shape: t.dims().to_vec(),
            bytes,
        })
    }
}

impl safetensors::View for HostTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `bytes` to `path` atomically and durably with [`masam_fs::atomic_write_bytes`]
/// (temp file in the same directory, fsync, rename, fsync of the directory). On any error the
/// temp file is removed and `path` is untouched.
///
/// # Errors
/// [`TrainError::Fs`], naming `path` and keeping the OS error as its source.
pub fn atomic_write(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    Ok(masam_fs::atomic_write_bytes(path, bytes)?)
}

/// [`atomic_write`] with the content produced by `write` (which may stream it), through
/// [`masam_fs::atomic_write`]. If `write` returns an error (or panics), the temp file is
/// removed and `path` keeps its previous content.
///
/// # Errors
/// [`TrainError::Fs`], naming `path` and keeping the writer's or the OS error as its source.
///
/// ```
/// use std::io::Write;
/// let dir = std::env::temp_dir();
/// let path = dir.join(format!("masam-atomic-doc-{}.txt", std::process::id()));
/// masam_train::atomic_write(&path, b"old").unwrap();
/// let failed = masam_train::atomic_write_with(&path, |w| {
///     w.write_all(b"half of the new ")?;
///     Err(std::io::Error::other("disk full"))
/// });
/// assert!(failed.is_err());
/// assert_eq!(std::fs::read(&path).unwrap(), b"old");
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn atomic_write_with(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    Ok(masam_fs::atomic_write(path, write)?)
}
