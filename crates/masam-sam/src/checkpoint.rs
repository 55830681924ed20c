//! Official SAM checkpoints: reading (`.pth` zip `torch.save` files and `.safetensors`),
//! backbone detection, conversion to another input size (the reference's `load_from`), the
//! reference's "take what matches from SAM, initialise the rest" semantics as a `VarBuilder`
//! backend, and saving.
//!
//! ```no_run
//! use masam_sam::checkpoint::SamCheckpoint;
//! use masam_sam::ImageEncoderConfig;
//! # fn main() -> masam_sam::Result<()> {
//! let sam = SamCheckpoint::load("sam_vit_b_01ec64.pth")?;
//! let converted = sam.convert(&ImageEncoderConfig::vit_b().with_img_size(512))?;
//! converted.checkpoint.save_safetensors("sam_vit_b_512.safetensors")?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use masam_nn::SeededVarMap;

use crate::config::{backbone_name, ImageEncoderConfig};
use crate::error::{Error, Result};
use crate::image_encoder::ImageEncoder;
use crate::rel_pos::{resize_bilinear_bhwc, resize_rel_pos};

/// Prefix of the image encoder's tensors in an official SAM checkpoint.
pub const ENCODER_PREFIX: &str = "image_encoder";

/// A set of named tensors read from a checkpoint file, kept on the CPU and contiguous.
#[derive(Debug, Clone)]
pub struct SamCheckpoint {
    /// The file it came from (or a description of the source), used in error messages.
    pub path: PathBuf,
    /// The tensors by name (official names, e.g. `image_encoder.blocks.0.attn.qkv.weight`).
    pub tensors: HashMap<String, Tensor>,
}

/// What a checkpoint's image encoder looks like, read from its tensor shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneInfo {
    /// Token width C (from `patch_embed.proj.weight`).
    pub embed_dim: usize,
    /// Number of blocks (consecutive `blocks.{i}` present).
    pub depth: usize,
    /// Head width hd (columns of `rel_pos_h`), when the checkpoint has relative positions.
    pub head_dim: Option<usize>,
    /// Blocks whose relative-position tables span the whole token grid (global attention).
    pub global_attn_indexes: Vec<usize>,
    /// Window side of the other blocks (from their table length `2·ws − 1`); 0 if none.
    pub window_size: usize,
    /// Token grid the checkpoint was made for, `(h, w)` (from `pos_embed`, or from the global
    /// tables when there is no `pos_embed`).
    pub grid: (usize, usize),
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// MLP hidden width (rows of `mlp.lin1.weight`).
    pub mlp_dim: usize,
    /// Neck output channels (rows of `neck.0.weight`).
    pub out_chans: usize,
    /// Whether the qkv projection has a bias.
    pub qkv_bias: bool,
    /// Whether there is an absolute position embedding.
    pub has_pos_embed: bool,
}

impl BackboneInfo {
    /// A short description, e.g. `vit_b (embed dim 768, 12 blocks, global [2, 5, 8, 11])`.
    pub fn describe(&self) -> String {
        format!(
            "{} (embed dim {}, {} blocks, global {:?})",
            backbone_name(self.embed_dim, self.depth),
            self.embed_dim,
            self.depth,
            self.global_attn_indexes
        )
    }

    /// The encoder configuration this checkpoint was made for. Heads are `C / hd` (one head when
    /// the checkpoint has no relative positions to read hd from).
    pub fn to_config(&self) -> ImageEncoderConfig {
        let num_heads = self
            .head_dim
            .map(|hd| self.embed_dim / hd.max(1))
            .unwrap_or(1);
        ImageEncoderConfig {
            embed_dim: self.embed_dim,
            depth: self.depth,
            num_heads,
            global_attn_indexes: self.global_attn_indexes.clone(),
            window_size: self.window_size,
            img_size: self.grid.0 * self.patch_size,
            patch_size: self.patch_size,
            in_chans: self.in_chans,
            mlp_ratio: self.mlp_dim as f64 / self.embed_dim as f64,
            out_chans: self.out_chans,
            qkv_bias: self.qkv_bias,
            use_abs_pos: self.has_pos_embed,
            use_rel_pos: self.head_dim.is_some(),
            layer_norm_eps: 1e-6,
        }
    }

    /// True when `cfg` describes this backbone (any input size: that is what conversion changes).
    pub fn matches(&self, cfg: &ImageEncoderConfig) -> bool {
        let mut g = cfg.global_attn_indexes.clone();
        g.sort_unstable();
        g.dedup();
        let windowed = (0..self.depth).any(|i| !self.global_attn_indexes.contains(&i));
        self.embed_dim == cfg.embed_dim
            && self.depth == cfg.depth
            && self.patch_size == cfg.patch_size
            && self.in_chans == cfg.in_chans
            && self.mlp_dim == cfg.mlp_dim()
            && self.out_chans == cfg.out_chans
            && self.qkv_bias == cfg.qkv_bias
            && self.has_pos_embed == cfg.use_abs_pos
            && self.head_dim.is_some() == cfg.use_rel_pos
            && self.head_dim.is_none_or(|hd| hd == cfg.head_dim())
            && (!cfg.use_rel_pos || g == self.global_attn_indexes)
            && (!cfg.use_rel_pos || !windowed || self.window_size == cfg.window_size)
    }
}

/// The result of [`SamCheckpoint::convert`].
#[derive(Debug, Clone)]
pub struct ConvertedCheckpoint {
    /// All tensors of the source checkpoint, the encoder's converted to the target size.
    pub checkpoint: SamCheckpoint,
    /// Names of the tensors that were interpolated (`pos_embed`, global `rel_pos_h/w`).
    pub resized: Vec<String>,
    /// The encoder configuration the converted tensors fit.
    pub config: ImageEncoderConfig,
}

impl ConvertedCheckpoint {
    /// The reference's initialisation semantics over these tensors (see [`InitFromSam`]).
    pub fn init(&self, fallback: SeededVarMap, matched: Matched) -> InitFromSam {
        InitFromSam::new(self.checkpoint.tensors.clone(), fallback, matched)
            .with_resized(self.resized.iter().cloned())
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadCheckpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: None,
    }
}

/// [`Error::BadCheckpoint`] from the weight-file reader (kept as the source).
fn refused(path: &Path, source: masam_weights::WeightsError) -> Error {
    Error::BadCheckpoint {
        path: path.to_path_buf(),
        reason: source.to_string(),
        source: Some(Box::new(source)),
    }
}

/// [`Error::BadCheckpoint`] from candle (kept as the source).
fn unreadable(path: &Path, source: candle_core::Error) -> Error {
    Error::BadCheckpoint {
        path: path.to_path_buf(),
        reason: source.to_string(),
        source: Some(Box::new(source)),
    }
}

/// The first bytes of `path`, which must be a regular file (a FIFO or device is refused
/// without blocking on it).
fn read_magic(path: &Path) -> Result<Vec<u8>> {
    let f = masam_fs::open_regular_file(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let mut buf = Vec::with_capacity(8);
    f.take(8)
        .read_to_end(&mut buf)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
}

/// Candle tensors from the reader's validated raw tensors.
fn to_candle(
    path: &Path,
    raw: Vec<(String, masam_weights::RawTensor)>,
) -> Result<HashMap<String, Tensor>> {
    raw.into_iter()
        .map(|(k, t)| {
            let t = t.to_candle().map_err(|e| unreadable(path, e))?;
            Ok((k, t))
        })
        .collect()
}

impl SamCheckpoint {
    /// Wraps tensors already in memory; `source` names them in error messages.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, source: impl Into<PathBuf>) -> Self {
        Self {
            path: source.into(),
            tensors,
        }
    }

    /// Reads a checkpoint, choosing the format from the file's first bytes: a zip archive is
    /// read as a `torch.save` file, anything else as safetensors.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened, [`Error::BadCheckpoint`] when it is not a
    /// readable checkpoint (legacy non-zip `torch.save`, truncated or corrupt file, no tensors).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let magic = read_magic(path)?;
        if magic.starts_with(b"PK") {
            return Self::from_pth(path);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if matches!(ext.as_str(), "pth" | "pt" | "bin" | "ckpt") {
            return Err(bad(
                path,
                "not a zip-format torch.save file (legacy `_use_new_zipfile_serialization=False` \
                 files are not supported: re-save it with a recent PyTorch)",
            ));
        }
        Self::from_safetensors(path)
    }

    /// Reads a zip-format `torch.save` state dict (plain, or wrapped as `{"model": …}` or
    /// `{"state_dict": …}`) without executing any pickle code: [`masam_weights::read_pth`]
    /// (bounded interpreter, allow-listed globals, every size checked against the file before
    /// allocation).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_pth(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let magic = read_magic(path)?;
        if !magic.starts_with(b"PK\x03\x04") {
            return Err(bad(
                path,
                "not a zip-format torch.save file (legacy or corrupt)",
            ));
        }
        let tensors = masam_weights::read_pth(path, &masam_weights::Limits::default())
            .map_err(|e| refused(path, e))?;
        if tensors.is_empty() {
            return Err(bad(path, "no tensors found (not a state dict?)"));
        }
        Ok(Self::from_tensors(to_candle(path, tensors)?, path))
    }

    /// Reads a safetensors file ([`masam_weights::read_safetensors`]: header and data layout
    /// validated before any tensor is built).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_safetensors(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        read_magic(path)?;
        let tensors = masam_weights::read_safetensors(path, &masam_weights::Limits::default())
            .map_err(|e| refused(path, e))?;
        if tensors.is_empty() {
            return Err(bad(path, "no tensors found"));
        }
        Ok(Self::from_tensors(to_candle(path, tensors)?, path))
    }

    /// The tensor called `key`.
    ///
    /// # Errors
    /// [`Error::MissingKey`].
    pub fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| Error::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn enc(key: &str) -> String {
        format!("{ENCODER_PREFIX}.{key}")
    }

    /// Reads the image encoder's architecture from the tensor shapes.
    ///
    /// Global blocks are those whose `rel_pos_h` spans the whole grid (`2·g − 1` rows); a window
    /// as large as the grid is therefore reported as global (the two compute the same thing).
    ///
    /// # Errors
    /// [`Error::MissingKey`] when the encoder's defining tensors are absent,
    /// [`Error::BadCheckpoint`] when their shapes are inconsistent.
    pub fn backbone(&self) -> Result<BackboneInfo> {
        let pe = self.get(&Self::enc("patch_embed.proj.weight"))?;
        let (embed_dim, in_chans, patch_size, patch_w) = pe.dims4().map_err(|_| {
            bad(
                &self.path,
                format!("patch_embed.proj.weight has shape {:?}", pe.dims()),
            )
        })?;
        if patch_size != patch_w || patch_size == 0 {
            return Err(bad(&self.path, format!("non-square patch {:?}", pe.dims())));
        }
        let mut depth = 0;
        while self
            .tensors
            .contains_key(&Self::enc(&format!("blocks.{depth}.norm1.weight")))
        {
            depth += 1;
        }
        if depth == 0 {
            return Err(Error::MissingKey {
                path: self.path.clone(),
                key: Self::enc("blocks.0.norm1.weight"),
            });
        }
        let pos = self.tensors.get(&Self::enc("pos_embed"));
        let mut rows = Vec::with_capacity(depth);
        let mut head_dim = None;
        for i in 0..depth {
            match self
                .tensors
                .get(&Self::enc(&format!("blocks.{i}.attn.rel_pos_h")))
            {
                Some(t) => {
                    let (r, hd) = t.dims2().map_err(|_| {
                        bad(
                            &self.path,
                            format!("blocks.{i}.attn.rel_pos_h has shape {:?}", t.dims()),
                        )
                    })?;
                    if head_dim.is_some_and(|h| h != hd) {
                        return Err(bad(
                            &self.path,
                            "relative-position tables of different widths",
                        ));
                    }
                    head_dim = Some(hd);
                    rows.push(r);
                }
                None => rows.push(0),
            }
        }
        let grid = match pos {
            Some(p) => match p.dims() {
                &[1, h, w, c] if c == embed_dim => (h, w),
                d => {
                    return Err(bad(&self.path, format!("pos_embed has shape {d:?}")));
                }
            },
            None => {
                let m = rows.iter().copied().max().unwrap_or(0);
                (m.div_ceil(2), m.div_ceil(2))
            }
        };
        let (global_attn_indexes, window_size) = if head_dim.is_some() {
            let global_rows = 2 * grid.0.max(grid.1) - 1;
            let global: Vec<usize> = (0..depth).filter(|&i| rows[i] == global_rows).collect();
            let window_rows: HashSet<usize> = (0..depth)
                .filter(|&i| rows[i] != global_rows)
                .map(|i| rows[i])
                .collect();
            if window_rows.len() > 1 || window_rows.contains(&0) {
                return Err(bad(
                    &self.path,
                    format!("inconsistent relative-position tables: rows per block {rows:?}"),
                ));
            }
            let ws = window_rows
                .iter()
                .next()
                .map(|r| r.div_ceil(2))
                .unwrap_or(0);
            (global, ws)
        } else {
            (Vec::new(), 0)
        };
        let lin1 = self.get(&Self::enc("blocks.0.mlp.lin1.weight"))?;
        let neck = self.get(&Self::enc("neck.0.weight"))?;
        Ok(BackboneInfo {
            embed_dim,
            depth,
            head_dim,
            global_attn_indexes,
            window_size,
            grid,
            patch_size,
            in_chans,
            mlp_dim: lin1.dim(0)?,
            out_chans: neck.dim(0)?,
            qkv_bias: self
                .tensors
                .contains_key(&Self::enc("blocks.0.attn.qkv.bias")),
            has_pos_embed: pos.is_some(),
        })
    }

    /// Detects the backbone and checks that `cfg` describes it (at any input size).
    ///
    /// # Errors
    /// [`Error::BackboneMismatch`] naming both, e.g. a `vit_h` preset on a `vit_b` file.
    pub fn check_backbone(&self, cfg: &ImageEncoderConfig) -> Result<BackboneInfo> {
        let info = self.backbone()?;
        if !info.matches(cfg) {
            return Err(Error::BackboneMismatch {
                path: self.path.clone(),
                expected: cfg.describe(),
                found: info.describe(),
            });
        }
        Ok(info)
    }

    /// Converts the checkpoint for an encoder configured by `target`, exactly as the
    /// reference's `load_from` does:
    ///
    /// - `pos_embed` (1, g, g, C) is resized bilinearly (`align_corners=False`; a 2× downscale
    ///   is a 2×2 mean) to the target grid;
    /// - the **global** blocks' `rel_pos_h/w` are resized linearly to `2·g' − 1` rows (f32
    ///   index math); window blocks' tables are kept;
    /// - every other tensor (prompt encoder, mask decoder, …) is passed through.
    ///
    /// Then every tensor the target encoder needs is checked to be present with its shape.
    ///
    /// # Errors
    /// [`Error::BackboneMismatch`] when `target` is another backbone, [`Error::MissingKey`] /
    /// [`Error::ShapeMismatch`] naming the key (and both shapes), [`Error::Config`] for an invalid
    /// `target`.
    pub fn convert(&self, target: &ImageEncoderConfig) -> Result<ConvertedCheckpoint> {
        target.validate()?;
        self.check_backbone(target)?;
        let g = target.grid_size();
        let mut tensors = self.tensors.clone();
        let mut resized = Vec::new();
        let pos_key = Self::enc("pos_embed");
        if let Some(pos) = self.tensors.get(&pos_key) {
            let (_, h, w, _) = pos.dims4()?;
            if (h, w) != (g, g) {
                let r = resize_bilinear_bhwc(&pos.to_dtype(DType::F32)?, g, g)?
                    .to_dtype(pos.dtype())?;
                tensors.insert(pos_key.clone(), r);
                resized.push(pos_key);
            }
        }
        if target.use_rel_pos {
            for &i in &target.global_attn_indexes {
                for axis in ["h", "w"] {
                    let key = Self::enc(&format!("blocks.{i}.attn.rel_pos_{axis}"));
                    let t = self.get(&key)?;
                    let (rows, _) = t.dims2()?;
                    if rows != 2 * g - 1 {
                        let r = resize_rel_pos(&t.to_dtype(DType::F32)?, 2 * g - 1)?
                            .to_dtype(t.dtype())?;
                        tensors.insert(key.clone(), r);
                        resized.push(key);
                    }
                }
            }
        }
        resized.sort();
        let checkpoint = Self::from_tensors(tensors, self.path.clone());
        checkpoint.check_encoder(target)?;
        Ok(ConvertedCheckpoint {
            checkpoint,
            resized,
            config: target.clone(),
        })
    }

    /// Checks that every tensor an encoder configured by `cfg` needs is present with its shape.
    ///
    /// # Errors
    /// [`Error::MissingKey`] or [`Error::ShapeMismatch`] for the first offending key (in name
    /// order).
    pub fn check_encoder(&self, cfg: &ImageEncoderConfig) -> Result<()> {
        let mut expected = encoder_param_shapes(cfg, ENCODER_PREFIX)?;
        expected.sort();
        for (key, shape) in expected {
            let t = self.get(&key)?;
            if t.dims() != shape.as_slice() {
                return Err(Error::ShapeMismatch {
                    path: self.path.clone(),
                    key,
                    expected: shape,
                    found: t.dims().to_vec(),
                });
            }
        }
        Ok(())
    }

    /// The image encoder's tensors only (names starting with `image_encoder.`).
    pub fn encoder_tensors(&self) -> HashMap<String, Tensor> {
        let prefix = format!("{ENCODER_PREFIX}.");
        self.tensors
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A `VarBuilder` serving these tensors as constants (frozen weights), converted to `dtype`
    /// on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), dtype, device)
    }

    /// Writes all tensors to a safetensors file with [`save_safetensors_atomic`], so a failure
    /// never leaves a half-written file.
    ///
    /// # Errors
    /// [`Error::Fs`].
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        save_safetensors_atomic(&self.tensors, path.as_ref())
    }
}

/// Writes `tensors` to a safetensors file at `path` atomically and durably, through
/// [`masam_fs::atomic_write_path`] (temporary file in the same folder, fsync, rename, fsync of
/// the folder). A failure never leaves a half-written file at `path`.
///
/// # Errors
/// [`Error::Fs`]: the safetensors encoder's error ([`masam_fs::FsError::Produce`]) or the
/// file-system error, as its source.
pub fn save_safetensors_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    masam_fs::atomic_write_path(path, |tmp| candle_core::safetensors::save(tensors, tmp))?;
    Ok(())
}

/// A `VarBuilder` backend that creates nothing: it records every requested name and shape and
/// returns a zero tensor broadcast to that shape (one element of memory). Builds a model's
/// parameter list without allocating weights, e.g. for ViT-H.
///
/// ```
/// use candle_core::{DType, Device};
/// use masam_sam::checkpoint::ShapeRecorder;
/// let rec = ShapeRecorder::default();
/// let vb = rec.var_builder(DType::F32, &Device::Cpu);
/// let _ = masam_nn::linear(1280, 3840, vb.pp("qkv")).unwrap();
/// assert_eq!(rec.shapes()["qkv.weight"], vec![3840, 1280]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ShapeRecorder {
    shapes: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
}

impl ShapeRecorder {
    /// A `VarBuilder` over this recorder.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Every requested name with its shape.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.shapes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.shapes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), s.dims().to_vec());
        Tensor::zeros(vec![1; s.rank()], dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("ShapeRecorder: `{name}` requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Name → shape of every parameter of an image encoder configured by `cfg`, named under
/// `prefix` (e.g. [`ENCODER_PREFIX`]), without allocating weights.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration.
pub fn encoder_param_shapes(
    cfg: &ImageEncoderConfig,
    prefix: &str,
) -> Result<Vec<(String, Vec<usize>)>> {
    let rec = ShapeRecorder::default();
    let vb = rec.var_builder(DType::F32, &Device::Cpu);
    let vb = if prefix.is_empty() { vb } else { vb.pp(prefix) };
    ImageEncoder::new(cfg, vb)?;
    Ok(rec.shapes().into_iter().collect())
}

/// How [`InitFromSam`] serves a tensor found in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// As a constant tensor (frozen weights).
    Frozen,
    /// As a `Var` inserted into the fallback map (trainable, starting from SAM's value).
    Trainable,
}

/// Where one parameter's initial value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamSource {
    /// Copied from the checkpoint (name and shape matched).
    Checkpoint,
    /// From the checkpoint after interpolation (`pos_embed`, global `rel_pos`).
    Resized,
    /// Freshly initialised: the checkpoint has no tensor of that name.
    Fresh,
    /// Freshly initialised: the checkpoint's tensor has another shape.
    ShapeMismatch {
        /// Shape in the checkpoint.
        checkpoint: Vec<usize>,
        /// Shape the model asked for.
        model: Vec<usize>,
    },
}

/// A `VarBuilder` backend with the reference's initialisation semantics: the authors' code loads
/// the SAM checkpoint with a `load_state_dict` that fails but, before raising, has copied every
/// tensor whose name and shape match. So here a requested tensor whose name **and** shape match
/// the (converted) checkpoint is taken from it, anything else is freshly initialised by a
/// [`SeededVarMap`]. Records where every parameter came from.
///
/// ```
/// use std::collections::HashMap;
/// use candle_core::{DType, Device, Tensor};
/// use masam_nn::{linear, SeededVarMap};
/// use masam_sam::checkpoint::{InitFromSam, Matched, ParamSource};
/// # fn main() -> candle_core::Result<()> {
/// let mut sam = HashMap::new();
/// sam.insert("a.weight".to_string(), Tensor::ones((2, 3), DType::F32, &Device::Cpu)?);
/// sam.insert("b.weight".to_string(), Tensor::ones((9, 9), DType::F32, &Device::Cpu)?);
/// let init = InitFromSam::new(sam, SeededVarMap::new(0), Matched::Trainable);
/// let vb = init.var_builder(DType::F32, &Device::Cpu);
/// let _a = linear(3, 2, vb.pp("a"))?;
/// let _b = linear(3, 2, vb.pp("b"))?;
/// let r = init.report();
/// assert_eq!(r["a.weight"], ParamSource::Checkpoint);
/// assert_eq!(r["a.bias"], ParamSource::Fresh);
/// assert!(matches!(r["b.weight"], ParamSource::ShapeMismatch { .. }));
/// assert_eq!(init.fallback().named_vars().len(), 4); // all trainable
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InitFromSam {
    tensors: Arc<HashMap<String, Tensor>>,
    resized: Arc<HashSet<String>>,
    fallback: SeededVarMap,
    matched: Matched,
    report: Arc<Mutex<BTreeMap<String, ParamSource>>>,
}

impl InitFromSam {
    /// Serves `tensors` where they match; fresh tensors come from `fallback`.
    pub fn new(tensors: HashMap<String, Tensor>, fallback: SeededVarMap, matched: Matched) -> Self {
        Self {
            tensors: Arc::new(tensors),
            resized: Arc::new(HashSet::new()),
            fallback,
            matched,
            report: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Marks these names as interpolated (reported as [`ParamSource::Resized`]).
    pub fn with_resized(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.resized = Arc::new(names.into_iter().collect());
        self
    }

    /// The map holding fresh (and, with [`Matched::Trainable`], matched) variables.
    pub fn fallback(&self) -> &SeededVarMap {
        &self.fallback
    }

    /// A `VarBuilder` over this backend.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Name → source of every parameter requested so far.
    pub fn report(&self) -> BTreeMap<String, ParamSource> {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, name: &str, src: ParamSource) {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), src);
    }
}

impl SimpleBackend for InitFromSam {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(v) = self.fallback.get(name) {
            // Already created (a second request for the same parameter).
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter {name}: existing shape {:?}, requested {:?}",
                    v.shape(),
                    s
                );
            }
            return Ok(v.as_tensor().clone());
        }
        match self.tensors.get(name) {
            Some(t) if t.shape() == &s => {
                let src = if self.resized.contains(name) {
                    ParamSource::Resized
                } else {
                    ParamSource::Checkpoint
                };
                self.record(name, src);
                let t = t.to_dtype(dtype)?.to_device(dev)?;
                match self.matched {
                    Matched::Frozen => Ok(t),
                    Matched::Trainable => Ok(self.fallback.insert(name, &t)?.as_tensor().clone()),
                }
            }
            other => {
                let src = match other {
                    Some(t) => ParamSource::ShapeMismatch {
                        checkpoint: t.dims().to_vec(),
                        model: s.dims().to_vec(),
                    },
                    None => ParamSource::Fresh,
                };
                self.record(name, src);
                SimpleBackend::get(&self.fallback, s, name, h, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => self.fallback.get_unchecked(name, dtype, dev),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.fallback.contains_tensor(name)
    }
}
