//! MA-SAM checkpoints: the reference's `save_parameters` format and our own.
//!
//! This is the one place where parameter names are translated. Our names are SAM's state-dict
//! names plus `fact.*`; the reference's (its `save_parameters`)
//! wrap the encoder blocks (`image_encoder.ImageEncoderViT.blocks.{i}.Block.adapter_*`) and flatten
//! the FacT cores (`q_FacTs_###`, `v_FacTs_###`, `image_encoder.FacTu.weight`, …).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use masam_fact::ReferenceFormat;

use crate::model::{MaSam, FACT_PREFIX};
use crate::{Error, Result};

/// Number of NaN or infinite values in `t`.
fn non_finite_count(t: &Tensor) -> Result<usize> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().filter(|x| !x.is_finite()).count())
}

const ENCODER_BLOCKS: &str = "image_encoder.blocks.";
const REF_ENCODER_BLOCKS: &str = "image_encoder.ImageEncoderViT.blocks.";

/// The reference key of one of our trainable parameters, or `None` when the reference format has
/// no place for it (e.g. encoder weights under full fine-tuning).
///
/// ```
/// use masam_adapter::checkpoint::{our_name, reference_key};
/// let k = reference_key("image_encoder.blocks.3.adapter_conv_2.weight").unwrap();
/// assert_eq!(k, "image_encoder.ImageEncoderViT.blocks.3.Block.adapter_conv_2.weight");
/// assert_eq!(reference_key("fact.blocks.12.v_FacTs.weight").unwrap(), "v_FacTs_012");
/// assert_eq!(our_name("q_FacTs_001").unwrap(), "fact.blocks.1.q_FacTs.weight");
/// assert_eq!(our_name(&k).unwrap(), "image_encoder.blocks.3.adapter_conv_2.weight");
/// assert_eq!(reference_key("image_encoder.blocks.0.attn.qkv.weight"), None);
/// ```
pub fn reference_key(name: &str) -> Option<String> {
    if let Some(rest) = name
        .strip_prefix(FACT_PREFIX)
        .and_then(|r| r.strip_prefix('.'))
    {
        return ReferenceFormat::default().reference_key(rest);
    }
    if name.starts_with("prompt_encoder.") || name.starts_with("mask_decoder.") {
        return Some(name.to_string());
    }
    let rest = name.strip_prefix(ENCODER_BLOCKS)?;
    let (block, param) = rest.split_once('.')?;
    block.parse::<usize>().ok()?;
    if !param.starts_with("adapter_") {
        return None;
    }
    Some(format!("{REF_ENCODER_BLOCKS}{block}.Block.{param}"))
}

/// Our parameter name for a reference key (inverse of [`reference_key`]).
pub fn our_name(key: &str) -> Option<String> {
    if let Some(v) = ReferenceFormat::default().var_name(key) {
        return Some(format!("{FACT_PREFIX}.{v}"));
    }
    if key.starts_with("prompt_encoder.") || key.starts_with("mask_decoder.") {
        return Some(key.to_string());
    }
    let rest = key.strip_prefix(REF_ENCODER_BLOCKS)?;
    let (block, param) = rest.split_once('.')?;
    block.parse::<usize>().ok()?;
    let param = param.strip_prefix("Block.")?;
    Some(format!("{ENCODER_BLOCKS}{block}.{param}"))
}

fn ckpt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl MaSam {
    /// The trainable tensors under the reference's key names. Fails when a trainable parameter has
    /// no reference name (full fine-tuning trains encoder weights the format cannot hold).
    pub fn reference_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.refuse_inference()?;
        let mut out = BTreeMap::new();
        for (name, var) in self.trainable_vars() {
            let key = reference_key(&name).ok_or_else(|| {
                Error::Config(format!(
                    "parameter `{name}` has no place in the reference checkpoint format"
                ))
            })?;
            out.insert(key, var.as_tensor().detach());
        }
        Ok(out)
    }

    /// Loads a checkpoint in the reference's format (`.pth` written by `torch.save`, or
    /// `.safetensors`), strictly: every trainable parameter must be present with its shape, and
    /// every key must belong to the model.
    pub fn load_reference(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = masam_fact::read_tensors(path).map_err(|e| Error::CheckpointRead {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let mut by_name: HashMap<String, Tensor> = HashMap::new();
        for (k, t) in tensors {
            let name =
                our_name(&k).ok_or_else(|| ckpt_err(path, format!("unexpected key `{k}`")))?;
            by_name.insert(name, t);
        }
        self.set_trainable(path, by_name, true)
    }

    /// Writes the trainable tensors in the reference's format as safetensors (atomically).
    /// The reference code reads it with `safetensors.torch.load_file` in place of `torch.load`.
    pub fn save_reference(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self.reference_tensors()?.into_iter().collect();
        masam_sam::checkpoint::save_safetensors_atomic(&tensors, path.as_ref())?;
        Ok(())
    }

    /// Writes our own checkpoint: every trainable tensor under our names, safetensors (atomic).
    pub fn save_trainable(&self, path: impl AsRef<Path>) -> Result<()> {
        self.refuse_inference()?;
        let tensors: HashMap<String, Tensor> = self
            .trainable_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().detach()))
            .collect();
        masam_sam::checkpoint::save_safetensors_atomic(&tensors, path.as_ref())?;
        Ok(())
    }

    /// Loads our own checkpoint (strict, as [`MaSam::load_reference`]).
    pub fn load_trainable(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            Error::CheckpointRead {
                path: path.to_path_buf(),
                source: Box::new(e),
            }
        })?;
        self.set_trainable(path, tensors, true)
    }

    fn refuse_inference(&self) -> Result<()> {
        if self.is_inference() {
            return Err(Error::Config(
                "an inference model (MaSam::to_inference) holds no trainable tensors to save or \
                 load; use the model it was made from"
                    .into(),
            ));
        }
        Ok(())
    }

    fn set_trainable(
        &self,
        path: &Path,
        tensors: HashMap<String, Tensor>,
        strict: bool,
    ) -> Result<()> {
        self.refuse_inference()?;
        let vars = self.trainable_vars();
        // check everything before changing anything
        for (name, t) in &tensors {
            let var = vars.get(name).ok_or_else(|| {
                ckpt_err(
                    path,
                    format!("`{name}` is not a trainable parameter of this model"),
                )
            })?;
            if var.dims() != t.dims() {
                return Err(ckpt_err(
                    path,
                    format!(
                        "`{name}`: file has shape {:?}, the model expects {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            let bad = non_finite_count(t)?;
            if bad > 0 {
                return Err(ckpt_err(
                    path,
                    format!(
                        "`{name}` holds {bad} NaN or infinite values (a diverged training run?); \
                         refusing to load it"
                    ),
                ));
            }
        }
        if strict {
            if let Some(missing) = vars.keys().find(|k| !tensors.contains_key(*k)) {
                let shown = reference_key(missing).unwrap_or_else(|| missing.clone());
                return Err(ckpt_err(path, format!("missing tensor `{shown}`")));
            }
        }
        for (name, t) in tensors {
            let var = &vars[&name];
            let t = t.to_dtype(DType::F32)?.to_device(var.device())?;
            var.set(&t)?;
        }
        Ok(())
    }
}
