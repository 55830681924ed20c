//! `torch.save` zip archives: `{prefix}/data.pkl` (the pickle) and `{prefix}/data/{key}` (one
//! stored entry per storage).

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::Path;
use std::rc::Rc;

use crate::pickle::{self, TensorRecord};
use crate::{Limits, RawTensor, Result, WeightsError};

/// Reads every tensor of a zip-format `torch.save` state dict (plain, or wrapped as
/// `{"model": …}` or `{"state_dict": …}`), in the order of the file, without executing any
/// pickle code.
///
/// The pickle is run by a bounded interpreter (nesting depth, work proportional to its length,
/// globals only from an allow-list of PyTorch's tensor-rebuilding functions, storage classes and
/// `collections.OrderedDict`); every tensor view is checked against its storage and every
/// storage against its zip entry and the file's length before anything is allocated.
/// Compressed entries are refused (PyTorch stores them uncompressed), so there is no
/// decompression to bomb. Views with any strides are materialised contiguously.
///
/// # Errors
/// [`WeightsError`] naming the file and what was wrong.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("masam-weights-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("not_a_checkpoint.pth");
/// std::fs::write(&path, b"PK\x03\x04 truncated")?;
/// let err = masam_weights::read_pth(&path, &masam_weights::Limits::default()).unwrap_err();
/// assert!(err.to_string().contains("not_a_checkpoint.pth"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn read_pth(path: impl AsRef<Path>, limits: &Limits) -> Result<Vec<(String, RawTensor)>> {
    let path = path.as_ref();
    let file = masam_fs::open_regular_file(path)?;
    let len = file
        .metadata()
        .map_err(|source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    read_pth_from(std::io::BufReader::new(file), len, path, limits)
}

/// [`read_pth`] over bytes already in memory; `source` names them in errors.
///
/// # Errors
/// As [`read_pth`].
pub fn read_pth_bytes(
    bytes: &[u8],
    source: &Path,
    limits: &Limits,
) -> Result<Vec<(String, RawTensor)>> {
    read_pth_from(
        std::io::Cursor::new(bytes),
        bytes.len() as u64,
        source,
        limits,
    )
}

fn zip_err(
    path: &Path,
    reason: impl Into<String>,
    source: Option<zip::result::ZipError>,
) -> WeightsError {
    WeightsError::Zip {
        path: path.to_path_buf(),
        reason: reason.into(),
        source,
    }
}

fn tensor_err(path: &Path, name: &str, reason: impl Into<String>) -> WeightsError {
    WeightsError::Tensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Reads the whole stored entry `name`, after checking its claimed size against `max` and the
/// file's length; the zip reader verifies its CRC.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    file_len: u64,
    max: u64,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut entry = zip
        .by_name(name)
        .map_err(|e| zip_err(path, format!("entry `{name}`: {e}"), Some(e)))?;
    if entry.compression() != zip::CompressionMethod::Stored || entry.encrypted() {
        return Err(zip_err(
            path,
            format!("entry `{name}` is compressed or encrypted (torch.save stores entries as is)"),
            None,
        ));
    }
    let size = entry.size();
    if size != entry.compressed_size() || size > file_len {
        return Err(zip_err(
            path,
            format!(
                "entry `{name}` claims {size} bytes ({} stored) in a file of {file_len} bytes",
                entry.compressed_size()
            ),
            None,
        ));
    }
    if size > max {
        return Err(WeightsError::OverBudget {
            path: path.to_path_buf(),
            what: "a zip entry",
            needed: size,
            limit: max,
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    entry
        .by_ref()
        .take(size + 1)
        .read_to_end(&mut buf)
        .map_err(|e| zip_err(path, format!("entry `{name}`: {e}"), None))?;
    if buf.len() as u64 != size {
        return Err(zip_err(
            path,
            format!(
                "entry `{name}` holds {} bytes, not the {size} it claims",
                buf.len()
            ),
            None,
        ));
    }
    Ok(buf)
}

/// Number of elements of `shape`, or an error on overflow.
fn numel(shape: &[usize]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Checks a view against its storage; returns its size in bytes.
fn check_view(t: &TensorRecord, storage_bytes: u64) -> std::result::Result<u64, String> {
    let elem = t.storage.dtype.size_in_bytes() as u64;
    let n = numel(&t.shape).ok_or("the number of elements overflows")?;
    let bytes = n.checked_mul(elem).ok_or("the size in bytes overflows")?;
    let storage_numel = t.storage.numel;
    if storage_numel.checked_mul(elem) != Some(storage_bytes) {
        return Err(format!(
            "storage `{}` claims {storage_numel} elements of {elem} bytes but its entry has {storage_bytes} bytes",
            t.storage.key
        ));
    }
    if n == 0 {
        return Ok(0);
    }
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.strides) {
        last = (d as u64 - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or("the view's extent overflows")?;
    }
    if last >= storage_numel {
        return Err(format!(
            "the view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {storage_numel}",
            t.offset, t.shape, t.strides
        ));
    }
    Ok(bytes)
}

/// Copies the view's elements, in row-major order, out of its storage's bytes (checked by
/// [`check_view`]).
fn gather(t: &TensorRecord, storage: &[u8]) -> Vec<u8> {
    let elem = t.storage.dtype.size_in_bytes();
    let n: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(n * elem);
    if n == 0 {
        return out;
    }
    let rank = t.shape.len();
    // Row-major contiguous views are one slice.
    let mut expect = 1u64;
    let mut contiguous = true;
    for i in (0..rank).rev() {
        if t.shape[i] != 1 && t.strides[i] != expect {
            contiguous = false;
        }
        expect *= t.shape[i] as u64;
    }
    let start = t.offset as usize * elem;
    if contiguous {
        out.extend_from_slice(&storage[start..start + n * elem]);
        return out;
    }
    let mut index = vec![0usize; rank];
    let mut at = t.offset as usize;
    for _ in 0..n {
        out.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
        // Odometer increment over the view's dimensions, last fastest.
        for d in (0..rank).rev() {
            index[d] += 1;
            at += t.strides[d] as usize;
            if index[d] < t.shape[d] {
                break;
            }
            at -= t.strides[d] as usize * t.shape[d];
            index[d] = 0;
        }
    }
    out
}

fn read_pth_from<R: Read + Seek>(
    reader: R,
    file_len: u64,
    path: &Path,
    limits: &Limits,
) -> Result<Vec<(String, RawTensor)>> {
    if file_len > limits.max_file_bytes {
        return Err(WeightsError::FileTooLarge {
            path: path.to_path_buf(),
            size: file_len,
            limit: limits.max_file_bytes,
        });
    }
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| zip_err(path, e.to_string(), Some(e)))?;
    let pickles: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| n.as_ref() == "data.pkl" || n.ends_with("/data.pkl"))
        .map(|n| n.into_owned())
        .collect();
    let pkl = match pickles.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(zip_err(
                path,
                "no data.pkl entry (not a torch.save file)",
                None,
            ))
        }
        many => {
            return Err(zip_err(
                path,
                format!("{} data.pkl entries (one expected)", many.len()),
                None,
            ))
        }
    };
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let order = format!("{prefix}byteorder");
    if zip.index_for_name(&order).is_some() {
        let b = read_entry(&mut zip, &order, file_len, 16, path)?;
        if b.trim_ascii() != b"little" {
            return Err(zip_err(
                path,
                format!(
                    "byte order `{}`: only little-endian storages are supported",
                    String::from_utf8_lossy(&b)
                ),
                None,
            ));
        }
    }
    let program = read_entry(&mut zip, &pkl, file_len, limits.max_pickle_bytes, path)?;
    let root = pickle::run(&program, limits).map_err(|f: pickle::Fault| WeightsError::Pickle {
        path: path.to_path_buf(),
        offset: f.offset,
        opcode: f.opcode,
        reason: f.reason,
    })?;
    let records = pickle::state_dict(&root);
    drop(root);
    if records.len() > limits.max_tensors {
        return Err(WeightsError::OverBudget {
            path: path.to_path_buf(),
            what: "the number of tensors",
            needed: records.len() as u64,
            limit: limits.max_tensors as u64,
        });
    }
    // Check every view against its entry's claimed size, and the total, before reading data.
    let budget = limits.output_budget(file_len);
    let mut total = 0u64;
    let mut by_storage: BTreeMap<Rc<str>, Vec<usize>> = BTreeMap::new();
    for (i, (name, t)) in records.iter().enumerate() {
        let entry = format!("{prefix}data/{}", t.storage.key);
        let stored = {
            let e = zip
                .by_name(&entry)
                .map_err(|e| tensor_err(path, name, format!("storage entry `{entry}`: {e}")))?;
            e.size()
        };
        if stored > file_len {
            return Err(tensor_err(
                path,
                name,
                format!("storage entry `{entry}` claims {stored} bytes in a file of {file_len}"),
            ));
        }
        let bytes = check_view(t, stored).map_err(|r| tensor_err(path, name, r))?;
        total = total.saturating_add(bytes);
        if total > budget {
            return Err(WeightsError::OverBudget {
                path: path.to_path_buf(),
                what: "the tensors' data",
                needed: total,
                limit: budget,
            });
        }
        by_storage.entry(t.storage.key.clone()).or_default().push(i);
    }
    let mut out: Vec<Option<RawTensor>> = vec![None; records.len()];
    for (key, users) in by_storage {
        let entry = format!("{prefix}data/{key}");
        let data = read_entry(&mut zip, &entry, file_len, file_len, path)?;
        for i in users {
            let t = &records[i].1;
            if check_view(t, data.len() as u64).is_err() {
                return Err(tensor_err(
                    path,
                    &records[i].0,
                    "storage changed while reading",
                ));
            }
            out[i] = Some(RawTensor {
                dtype: t.storage.dtype,
                shape: t.shape.clone(),
                data: gather(t, &data),
            });
        }
    }
    Ok(records
        .into_iter()
        .zip(out)
        .filter_map(|((name, _), t)| t.map(|t| (name, t)))
        .collect())
}
