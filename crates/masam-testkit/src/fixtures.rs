//! Fixture locations and loading.
//!
//! The reference fixtures (computed by the authors' PyTorch code, see its `README.md`) live in
//! `tests/fixtures/reference-tiny/` at the workspace root; [`reference_tiny`] finds a file
//! there from any crate's tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// The workspace root (the folder holding the root `Cargo.toml` and `tests/fixtures`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The path of `name` in `tests/fixtures/reference-tiny/` (not checked for existence).
pub fn reference_tiny(name: &str) -> PathBuf {
    workspace_root()
        .join("tests/fixtures/reference-tiny")
        .join(name)
}

/// All tensors of a safetensors file, on the CPU.
///
/// # Panics
/// When the file cannot be read or parsed, naming the file.
pub fn load_safetensors(path: impl AsRef<Path>) -> HashMap<String, Tensor> {
    let path = path.as_ref();
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// All tensors of `tests/fixtures/reference-tiny/<name>`, on the CPU.
///
/// # Panics
/// As [`load_safetensors`].
pub fn load_reference_tiny(name: &str) -> HashMap<String, Tensor> {
    load_safetensors(reference_tiny(name))
}

/// A safetensors file read as raw little-endian data, for tests without candle types (e.g.
/// `f64` metric tables and `u8` label maps).
pub struct RawSafetensors {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl RawSafetensors {
    /// Reads the file.
    ///
    /// # Panics
    /// When the file cannot be read or parsed, naming the file.
    pub fn open(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
        safetensors::SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
        Self { path, bytes }
    }

    fn view(&self, name: &str, dtype: safetensors::Dtype) -> (Vec<usize>, &[u8]) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("checked in open");
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("fixture {}: tensor {name}: {e}", self.path.display()));
        assert_eq!(
            t.dtype(),
            dtype,
            "fixture {}: tensor {name} has dtype {:?}, expected {dtype:?}",
            self.path.display(),
            t.dtype()
        );
        (t.shape().to_vec(), t.data())
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Vec<usize> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("checked in open");
        st.tensor(name)
            .unwrap_or_else(|e| panic!("fixture {}: tensor {name}: {e}", self.path.display()))
            .shape()
            .to_vec()
    }

    /// Tensor `name` (dtype F64), flattened.
    pub fn f64s(&self, name: &str) -> Vec<f64> {
        let (_, data) = self.view(name, safetensors::Dtype::F64);
        data.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()
    }

    /// Tensor `name` (dtype U8, rank 3) as an array.
    pub fn u8_3d(&self, name: &str) -> ndarray::Array3<u8> {
        let (shape, data) = self.view(name, safetensors::Dtype::U8);
        assert_eq!(
            shape.len(),
            3,
            "tensor {name} has shape {shape:?}, expected rank 3"
        );
        ndarray::Array3::from_shape_vec((shape[0], shape[1], shape[2]), data.to_vec())
            .expect("size checked by safetensors")
    }
}
