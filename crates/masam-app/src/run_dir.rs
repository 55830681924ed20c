//! Re-opening a finished fine-tuning run: its `config.toml` and `model.safetensors` (written by
//! [`finetune::run`](crate::finetune::run)) rebuilt into the trained [`MaSam`].
//!
//! The model is rebuilt exactly as the run built it, then the trained tensors are loaded
//! strictly:
//! - [`Finetune::Full`]: every parameter is in `model.safetensors`; no SAM checkpoint is read.
//! - [`Finetune::ParameterEfficient`] with a SAM checkpoint: the frozen encoder comes from that
//!   checkpoint (its path is in `config.toml`; it can be overridden when the file moved).
//! - [`Finetune::ParameterEfficient`] without one: the random frozen encoder is drawn again
//!   from the run's seed (`trainer.seed`), which reproduces it bit for bit.
//!
//! ```no_run
//! use masam_adapter::candle::Device;
//! use masam_app::RunDir;
//! # fn main() -> masam_app::Result<()> {
//! let run = RunDir::open("runs/btcv_finetune")?;
//! let model = run.load_model(None, &Device::Cpu)?;
//! assert_eq!(model.config, run.config.model);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use masam_adapter::candle::Device;
use masam_adapter::{Finetune, MaSam, SamCheckpoint};

use crate::{AppError, FinetuneConfig, Result};

/// File name of the run configuration inside a run folder.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the trained tensors inside a run folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A run folder written by [`finetune::run`](crate::finetune::run).
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub path: PathBuf,
    /// Its `config.toml`.
    pub config: FinetuneConfig,
}

impl RunDir {
    /// Reads `dir/config.toml` and checks that `dir/model.safetensors` exists.
    ///
    /// # Errors
    /// [`AppError::Io`] when a file is missing or unreadable, [`AppError::Toml`] when the TOML does
    /// not describe a run.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().to_path_buf();
        let config = load_config(path.join(CONFIG_FILE))?;
        let weights = path.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(AppError::Io {
                path: weights,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no trained weights in this run folder (did the run finish?)",
                ),
            });
        }
        Ok(Self { path, config })
    }

    /// `model.safetensors` of the run.
    pub fn weights_path(&self) -> PathBuf {
        self.path.join(WEIGHTS_FILE)
    }

    /// The trained model (see the module docs); `sam_checkpoint` replaces the path stored in
    /// the configuration.
    pub fn load_model(&self, sam_checkpoint: Option<&Path>, device: &Device) -> Result<MaSam> {
        load_model(&self.config, self.weights_path(), sam_checkpoint, device)
    }
}

/// Reads a [`FinetuneConfig`] from a TOML file (a regular file of at most
/// [`MAX_CONFIG_BYTES`](crate::config_limits::MAX_CONFIG_BYTES)) and checks it
/// ([`FinetuneConfig::validate`]).
///
/// # Errors
/// [`AppError::Fs`] when the path is not a readable regular file, [`AppError::Io`] when it is
/// too large or not UTF-8, [`AppError::Toml`] (naming the file and the offending key) when it
/// is not a valid configuration, [`AppError::Config`] when a value is out of bounds.
pub fn load_config(path: impl AsRef<Path>) -> Result<FinetuneConfig> {
    use std::io::Read;
    let path = path.as_ref();
    let io = |source| AppError::Io {
        path: path.to_path_buf(),
        source,
    };
    let limit = crate::config_limits::MAX_CONFIG_BYTES;
    let mut bytes = Vec::new();
    masam_fs::open_regular_file(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes: not a run configuration"),
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let cfg: FinetuneConfig = toml::from_str(&text).map_err(|source| AppError::Toml {
        path: path.to_path_buf(),
        source,
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// The untrained model of a run, built as [`finetune::run`](crate::finetune::run) builds it
/// (same seed, same initialisation order); `sam_checkpoint` overrides the configured path.
pub fn build_model(
    cfg: &FinetuneConfig,
    sam_checkpoint: Option<&Path>,
    device: &Device,
) -> Result<MaSam> {
    let seed = cfg.trainer.seed;
    let ckpt = sam_checkpoint.or(cfg.sam_checkpoint.as_deref());
    match (cfg.model.finetune, ckpt) {
        // every tensor is trained and saved: the SAM weights are not needed to rebuild it
        (Finetune::Full, _) | (Finetune::ParameterEfficient, None) => {
            Ok(MaSam::random(&cfg.model, seed, device)?)
        }
        (Finetune::ParameterEfficient, Some(p)) => {
            if !p.is_file() {
                return Err(AppError::Io {
                    path: p.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the SAM checkpoint of this run (its frozen encoder) is missing; \
                         pass its new location",
                    ),
                });
            }
            Ok(MaSam::from_sam_checkpoint(
                &cfg.model,
                &SamCheckpoint::load(p)?,
                seed,
                device,
            )?)
        }
    }
}

/// The trained model: [`build_model`], then `weights` loaded strictly
/// ([`MaSam::load_trainable`]).
pub fn load_model(
    cfg: &FinetuneConfig,
    weights: impl AsRef<Path>,
    sam_checkpoint: Option<&Path>,
    device: &Device,
) -> Result<MaSam> {
    let model = build_model(cfg, sam_checkpoint, device)?;
    model.load_trainable(weights)?;
    Ok(model)
}
