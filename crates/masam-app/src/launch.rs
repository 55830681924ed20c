//! Starting a multi-GPU run: one process per GPU on this node, or this process as one rank
//! of a launch described by the environment ([`DistEnv`]).
//!
//! The contract: `RANK` (0..`WORLD_SIZE`), `WORLD_SIZE`, `LOCAL_RANK` (the GPU of this rank on
//! its node, default `RANK`) and `MASAM_RENDEZVOUS`, a file every rank can read (on several
//! nodes, on a shared file system) that must not exist before the launch: rank 0 writes NCCL's
//! unique id to it and the other ranks wait for it. [`launch_local`] sets these for the
//! processes it starts; on several nodes, a scheduler (or the user) sets them.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use masam_adapter::dist::{Communicator, DistEnv};

use crate::{AppError, Result};

/// True when this build can run NCCL ranks (the `nccl` feature).
pub const NCCL_AVAILABLE: bool = cfg!(feature = "nccl");

/// The communicator of the rank `env` describes: NCCL on GPU `env.local_rank`.
///
/// # Errors
/// [`AppError::Config`] in a build without the `nccl` feature, or when NCCL cannot start
/// (no GPU, no `MASAM_RENDEZVOUS` with several ranks, rank 0's id never written).
pub fn nccl_communicator(env: &DistEnv) -> Result<Arc<dyn Communicator>> {
    #[cfg(feature = "nccl")]
    {
        let c = masam_adapter::dist::NcclCommunicator::from_env(env).map_err(|e| {
            AppError::Config(format!(
                "rank {} of {}: cannot join the NCCL group: {e}",
                env.rank, env.world_size
            ))
        })?;
        Ok(Arc::new(c))
    }
    #[cfg(not(feature = "nccl"))]
    {
        Err(AppError::Config(format!(
            "rank {} of {}: this masam was built without NCCL; multi-GPU training needs \
             `cargo build --release --features nccl` (CUDA and libnccl), or use --ranks N for \
             CPU ranks",
            env.rank, env.world_size
        )))
    }
}

/// Runs `n` copies of this executable with `args`, rank `i` on GPU `i`, with the launch
/// variables set and the rendezvous file `rendezvous` (removed first if a previous launch
/// left it, and afterwards); waits for all of them. When one fails, the others are stopped
/// (a rank waiting for a dead peer would wait for ever).
///
/// # Errors
/// [`AppError::Config`] naming the first rank that failed and its exit status, or when a
/// process cannot be started.
pub fn launch_local(n: usize, args: &[OsString], rendezvous: &Path) -> Result<()> {
    if n == 0 {
        return Err(AppError::Config("--gpus must be at least 1".into()));
    }
    let exe = std::env::current_exe()
        .map_err(|e| AppError::Config(format!("cannot find this executable: {e}")))?;
    let _ = std::fs::remove_file(rendezvous);
    let mut children: Vec<Option<Child>> = Vec::with_capacity(n);
    for rank in 0..n {
        let env = DistEnv {
            rank,
            world_size: n,
            local_rank: rank,
            rendezvous: Some(rendezvous.to_path_buf()),
        };
        let spawned = Command::new(&exe).args(args).envs(env.to_vars()).spawn();
        match spawned {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                stop_all(&mut children);
                return Err(AppError::Config(format!("cannot start rank {rank}: {e}")));
            }
        }
    }
    let outcome = wait_all(&mut children);
    let _ = std::fs::remove_file(rendezvous);
    outcome
}

/// Waits until every child has exited; on the first failure stops the others.
fn wait_all(children: &mut [Option<Child>]) -> Result<()> {
    loop {
        let mut running = 0;
        for rank in 0..children.len() {
            let Some(child) = children[rank].as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) if status.success() => children[rank] = None,
                Ok(Some(status)) => {
                    children[rank] = None;
                    stop_all(children);
                    return Err(AppError::Config(format!(
                        "rank {rank} failed ({status}); the other ranks were stopped"
                    )));
                }
                Ok(None) => running += 1,
                Err(e) => {
                    stop_all(children);
                    return Err(AppError::Config(format!("waiting for rank {rank}: {e}")));
                }
            }
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills and reaps every child still running.
fn stop_all(children: &mut [Option<Child>]) {
    for child in children.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_nccl_a_rank_is_refused_with_a_hint() {
        let env = DistEnv {
            rank: 0,
            world_size: 2,
            local_rank: 0,
            rendezvous: None,
        };
        if !NCCL_AVAILABLE {
            let e = nccl_communicator(&env).err().map(|e| e.to_string());
            assert!(e.is_some_and(|e| e.contains("--features nccl")));
        }
    }

    #[test]
    fn zero_processes_are_refused() {
        assert!(launch_local(0, &[], Path::new("/nonexistent/id")).is_err());
    }
}
