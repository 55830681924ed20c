//! safetensors files, validated before any tensor is built.

use std::io::Read;
use std::path::Path;

use crate::{Limits, RawTensor, Result, WeightDtype, WeightsError};

fn bad(path: &Path, reason: impl Into<String>) -> WeightsError {
    WeightsError::Safetensors {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: None,
    }
}

/// Reads every tensor of a safetensors file, in the order of their data in the file.
///
/// The file must be a regular file no larger than [`Limits::max_file_bytes`]; it is read into
/// memory once. The `safetensors` crate checks the header (its length against the file, valid
/// JSON of at most 100 MB, each tensor's byte range equal to its dtype and shape, ranges
/// contiguous, without overlap or gap, and covering the data exactly); on top of that the number
/// of tensors, their rank and their dtype are checked against `limits`.
///
/// # Errors
/// [`WeightsError`] naming the file and what was wrong.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("masam-weights-st-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("lying.safetensors");
/// // The header claims 1 TB of JSON.
/// std::fs::write(&path, [0, 0, 0, 0, 0, 1, 0, 0, b'{', b'}'])?;
/// let err = masam_weights::read_safetensors(&path, &masam_weights::Limits::default()).unwrap_err();
/// assert!(err.to_string().contains("lying.safetensors"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn read_safetensors(
    path: impl AsRef<Path>,
    limits: &Limits,
) -> Result<Vec<(String, RawTensor)>> {
    let path = path.as_ref();
    let file = masam_fs::open_regular_file(path)?;
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    if len > limits.max_file_bytes {
        return Err(WeightsError::FileTooLarge {
            path: path.to_path_buf(),
            size: len,
            limit: limits.max_file_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    read_safetensors_bytes(&bytes, path, limits)
}

/// [`read_safetensors`] over bytes already in memory; `source` names them in errors.
///
/// # Errors
/// As [`read_safetensors`].
pub fn read_safetensors_bytes(
    bytes: &[u8],
    source: &Path,
    limits: &Limits,
) -> Result<Vec<(String, RawTensor)>> {
    let path = source;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(WeightsError::FileTooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: limits.max_file_bytes,
        });
    }
    let Some(head) = bytes.get(..8) else {
        return Err(bad(
            path,
            format!(
                "{} bytes: shorter than the 8-byte header length",
                bytes.len()
            ),
        ));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(head);
    let header = u64::from_le_bytes(n);
    if header > bytes.len() as u64 - 8 {
        return Err(bad(
            path,
            format!(
                "the header claims {header} bytes but the file has {} after the length",
                bytes.len() - 8
            ),
        ));
    }
    let st =
        safetensors::SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
            source: Some(e),
        })?;
    if st.len() > limits.max_tensors {
        return Err(WeightsError::OverBudget {
            path: path.to_path_buf(),
            what: "the number of tensors",
            needed: st.len() as u64,
            limit: limits.max_tensors as u64,
        });
    }
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let dtype =
            WeightDtype::from_safetensors(view.dtype()).ok_or_else(|| WeightsError::Tensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                reason: format!("dtype {:?} is not supported", view.dtype()),
            })?;
        if view.shape().len() > limits.max_rank {
            return Err(WeightsError::Tensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                reason: format!(
                    "{} dimensions, more than {}",
                    view.shape().len(),
                    limits.max_rank
                ),
            });
        }
        // The crate checked that the data's length is the shape's size times the dtype's.
        out.push((
            name.to_string(),
            RawTensor {
                dtype,
                shape: view.shape().to_vec(),
                data: view.data().to_vec(),
            },
        ));
    }
    Ok(out)
}
