//! Data-parallel fine-tuning inside one process: one thread per rank on the CPU, each with
//! its own model and data shard, gradients averaged through a [`ThreadGroup`].
//!
//! This is the CPU form of a multi-GPU run (`masam finetune --ranks N`): it follows the same
//! code path as NCCL ranks ([`crate::finetune::run_ranked`]) and is how that path is tested on
//! machines without GPUs. It does not make training faster on a CPU (the ranks share the
//! cores); it gives the same model as a multi-GPU run with the same global batch.

use std::sync::Arc;

use masam_adapter::dist::ThreadGroup;
use masam_adapter::{MaSam, StepStats};

use crate::{AppError, FinetuneConfig, FinetuneReport, Result};

/// Runs `cfg` as `ranks` data-parallel ranks on threads of this process; returns rank 0's
/// model and report (rank 0 writes the run folder; `on_step` sees rank 0's steps, whose losses
/// are the means over the ranks).
///
/// # Errors
/// The first rank's own failure (a rank that only saw another rank leave reports the error of
/// the rank that failed first); [`AppError::Config`] when `ranks` is 0.
pub fn run_threads(
    cfg: &FinetuneConfig,
    init: Option<&std::path::Path>,
    ranks: usize,
    on_step: impl FnMut(&StepStats),
) -> Result<(MaSam, FinetuneReport)> {
    let comms =
        ThreadGroup::new(ranks).map_err(|e| AppError::Config(format!("--ranks {ranks}: {e}")))?;
    let mut comms = comms.into_iter();
    let Some(root) = comms.next() else {
        return Err(AppError::Config("no rank".into()));
    };
    let workers: Vec<_> = comms
        .map(|c| {
            let cfg = cfg.clone();
            let init = init.map(|p| p.to_path_buf());
            std::thread::Builder::new()
                .name(format!(
                    "rank {}",
                    masam_adapter::dist::Communicator::rank(&c)
                ))
                .spawn(move || {
                    crate::finetune::run_ranked(&cfg, init.as_deref(), Arc::new(c), |_| {})
                        .map(|_| ())
                })
                .map_err(|e| AppError::Config(format!("cannot start a rank's thread: {e}")))
        })
        .collect::<Result<_>>()?;
    let mine = crate::finetune::run_ranked(cfg, init, Arc::new(root), on_step);
    let mut others = vec![];
    for w in workers {
        others.push(
            w.join()
                .unwrap_or_else(|_| Err(AppError::Config("a rank's thread panicked".into()))),
        );
    }
    let aborted = |r: &Result<()>| matches!(r, Err(e) if is_aborted(e));
    match mine {
        Ok(out) => {
            // every rank finished the same steps; a late failure of another rank still fails
            others.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))?;
            Ok(out)
        }
        Err(e) if is_aborted(&e) => {
            // rank 0 only saw another rank leave: report that rank's own failure
            match others.into_iter().find(|r| r.is_err() && !aborted(r)) {
                Some(Err(cause)) => Err(cause),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// True when `e` says only that another rank left the group.
fn is_aborted(e: &AppError) -> bool {
    use masam_adapter::dist::DistError;
    match e {
        AppError::Model(m) => {
            matches!(&**m, masam_adapter::Error::Dist(d) if matches!(**d, DistError::Aborted(_)))
        }
        _ => false,
    }
}
