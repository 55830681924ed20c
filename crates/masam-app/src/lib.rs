//! # masam-app
//!
//! The application layer of masam, shared by the `masam` command-line tool and the examples.
//! The model, training, inference and checkpoints are the library `masam-adapter`; this crate
//! holds what only an application needs:
//!
//! | module | job |
//! |---|---|
//! | [`run_config`] | a run's whole configuration ([`FinetuneConfig`]) and its recipes: the paper's, the embedded phantom default |
//! | [`data_source`] | where a run's volumes come from ([`DataSource`]: phantom, BTCV, file pairs) and loading them |
//! | [`finetune`] | a whole fine-tuning run: data, model, training with a budget, checkpoints, evaluation, files |
//! | [`loss_log`] | the run's `loss.csv`, written step by step (survives a crash, continues on resume) |
//! | [`run_dir`] | re-opening a finished run folder as a trained model |
//! | [`figures`] | the run's PNG figures (loss and Dice curves, overlays) |
//! | [`render`] | the drawing behind the figures |
//! | [`device`] | device names (`cpu`, `cuda:1`) from configs and flags |
//! | [`task`] | the paper's datasets ([`Task`]): layout, classes, label mapping, intensity, split |
//! | [`video`] | RGB video tasks: frame stacks, per-frame prediction, per-class Dice and IoU |
//! | [`runtime`] | process settings for fast CPU training |
//! | [`reference_config`] | the `config.json` of reference fixture sets (parity checks) |
//!
//! ```no_run
//! use masam_app::{finetune, FinetuneConfig};
//! # fn main() -> masam_app::Result<()> {
//! let cfg = FinetuneConfig::phantom_default(100, 1234, "runs/demo".into());
//! let (_model, report) = finetune::run(&cfg, |s| println!("step {} loss {:.4}", s.step, s.loss))?;
//! println!("{:?}", report.dice.map(|d| d.mean()));
//! # Ok(()) }
//! ```

pub mod config_limits;
pub mod data_source;
pub mod device;
pub mod error;
pub mod figures;
pub mod finetune;
pub mod launch;
pub mod loss_log;
pub mod parallel;
pub mod reference_config;
pub mod render;
pub mod run_config;
pub mod run_dir;
pub mod runtime;
pub mod schedule_horizon;
pub mod task;
pub mod video;

pub use data_source::DataSource;
pub use error::{AppError, Result};
pub use finetune::FinetuneReport;
pub use run_config::FinetuneConfig;
pub use run_dir::RunDir;
pub use task::{Protocol, Task, TaskOptions};
