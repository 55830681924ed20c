//! Reading and writing FacT parameters in the reference (MA-SAM) key format.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::error::{FactError, Result};
use crate::fact::Fact;

/// The key scheme of MA-SAM's `Fact_tt_Sam.save_parameters`:
/// - `{shared_prefix}FacTu.weight` (r, C) and `{shared_prefix}FacTv.weight` (C, r);
/// - `{p}_FacTs_{i:03}` for the FacT-TT core of projection `p` in block `i` (MA-SAM saves
///   `q_FacTs_###` and `v_FacTs_###`; k, proj, fc1, fc2 follow the same pattern);
/// - `{shared_prefix}FacTc` and `{shared_prefix}FacTp` for FacT-TK.
///
/// The default prefix is MA-SAM's `image_encoder.`.
///
/// ```
/// use masam_fact::ReferenceFormat;
/// let f = ReferenceFormat::default();
/// assert_eq!(f.reference_key("blocks.7.q_FacTs.weight").as_deref(), Some("q_FacTs_007"));
/// assert_eq!(f.reference_key("FacTu.weight").as_deref(), Some("image_encoder.FacTu.weight"));
/// assert_eq!(f.var_name("v_FacTs_011").as_deref(), Some("blocks.11.v_FacTs.weight"));
/// assert_eq!(f.var_name("mask_decoder.x"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceFormat {
    /// Prefix of the shared tensors (`image_encoder.` in MA-SAM).
    pub shared_prefix: String,
}

impl Default for ReferenceFormat {
    fn default() -> Self {
        Self {
            shared_prefix: "image_encoder.".into(),
        }
    }
}

const SHARED: [&str; 4] = ["FacTu.weight", "FacTv.weight", "FacTc", "FacTp"];

impl ReferenceFormat {
    /// The reference key of a parameter named `var_name` (as in [`Fact::parameters`]).
    pub fn reference_key(&self, var_name: &str) -> Option<String> {
        if SHARED.contains(&var_name) {
            return Some(format!("{}{var_name}", self.shared_prefix));
        }
        let rest = var_name.strip_prefix("blocks.")?;
        let (block, core) = rest.split_once('.')?;
        let block: usize = block.parse().ok()?;
        let proj = core.strip_suffix("_FacTs.weight")?;
        Some(format!("{proj}_FacTs_{block:03}"))
    }

    /// The parameter name of a reference key, if it is a FacT key.
    pub fn var_name(&self, key: &str) -> Option<String> {
        if let Some(name) = key.strip_prefix(self.shared_prefix.as_str()) {
            if SHARED.contains(&name) {
                return Some(name.to_string());
            }
        }
        let (proj, block) = key.rsplit_once("_FacTs_")?;
        if proj.is_empty() || proj.contains('.') || block.is_empty() {
            return None;
        }
        if !block.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let block: usize = block.parse().ok()?;
        Some(format!("blocks.{block}.{proj}_FacTs.weight"))
    }
}

/// Reads every tensor of a `.safetensors` file or of a `torch.save`d flat state dict (`.pth`,
/// `.pt`, `.bin`), onto the CPU, through [`masam_weights`]: the pickle is run by a bounded
/// interpreter that only rebuilds tensors, and every size is checked against the file before
/// anything is allocated.
///
/// # Errors
/// [`FactError::Io`] when the file does not exist, [`FactError::Weights`] when the file is not
/// a readable checkpoint (naming the file and the problem).
pub fn read_tensors(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(FactError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let limits = masam_weights::Limits::default();
    let raw = if matches!(ext, "pth" | "pt" | "bin") {
        masam_weights::read_pth(path, &limits)?
    } else {
        masam_weights::read_safetensors(path, &limits)?
    };
    raw.into_iter()
        .map(|(name, t)| Ok((name, t.to_candle()?)))
        .collect()
}

impl Fact {
    /// The parameters under their reference keys.
    pub fn reference_tensors(&self, format: &ReferenceFormat) -> HashMap<String, Tensor> {
        self.parameters()
            .into_iter()
            .filter_map(|(n, t)| format.reference_key(&n).map(|k| (k, t)))
            .collect()
    }

    /// Overwrites the parameters, in place, with the tensors of a reference-format map (extra
    /// keys, e.g. the decoder's, are ignored). Every key is checked before anything is written,
    /// so on error nothing changes. `Var`s keep their identity, so optimisers and hooks built
    /// earlier see the new values.
    pub fn load_reference(
        &self,
        tensors: &HashMap<String, Tensor>,
        format: &ReferenceFormat,
    ) -> Result<()> {
        let mut writes = Vec::new();
        for (name, dst) in self.parameters() {
            let key = format
                .reference_key(&name)
                .ok_or_else(|| FactError::MissingTensor(name.clone()))?;
            let src = tensors
                .get(&key)
                .ok_or_else(|| FactError::MissingTensor(key.clone()))?;
            if src.dims() != dst.dims() {
                return Err(FactError::ShapeMismatch {
                    what: key,
                    expected: dst.dims().to_vec(),
                    got: src.dims().to_vec(),
                });
            }
            if !dst.is_contiguous() {
                return Err(FactError::Candle(candle_core::Error::Msg(format!(
                    "parameter {name} is not contiguous and cannot be written in place"
                ))));
            }
            let src = src.to_dtype(dst.dtype())?.to_device(dst.device())?.copy()?; // fresh storage: never aliases `dst`
            writes.push((dst, src));
        }
        for (dst, src) in writes {
            dst.slice_set(&src, 0, 0)?;
        }
        Ok(())
    }

    /// [`Fact::load_reference`] from a `.safetensors` or `.pth` file (see [`read_tensors`]).
    pub fn load_reference_file(
        &self,
        path: impl AsRef<Path>,
        format: &ReferenceFormat,
    ) -> Result<()> {
        let tensors = read_tensors(path)?;
        self.load_reference(&tensors, format)
    }

    /// Writes the parameters under their reference keys to a safetensors file, atomically
    /// ([`masam_fs::atomic_write_path`]): a failure never leaves a partial file at `path`.
    pub fn save_reference(&self, path: impl AsRef<Path>, format: &ReferenceFormat) -> Result<()> {
        let tensors = self.reference_tensors(format);
        masam_fs::atomic_write_path(path, |tmp| candle_core::safetensors::save(&tensors, tmp))?;
        Ok(())
    }
}
