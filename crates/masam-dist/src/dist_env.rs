//! The launch contract: which rank this process is, read from the environment.

use std::path::PathBuf;

use crate::{DistError, Result};

/// Name of the variable holding this process's rank.
pub const RANK: &str = "RANK";
/// Name of the variable holding the number of ranks.
pub const WORLD_SIZE: &str = "WORLD_SIZE";
/// Name of the variable holding the GPU index on this node.
pub const LOCAL_RANK: &str = "LOCAL_RANK";
/// Name of the variable holding the rendezvous file (NCCL's unique id, written by rank 0).
pub const MASAM_RENDEZVOUS: &str = "MASAM_RENDEZVOUS";

/// Where this process stands in a data-parallel launch, from `RANK`, `WORLD_SIZE`,
/// `LOCAL_RANK` (the CUDA device index on this node; defaults to `RANK`, right on one node)
/// and `MASAM_RENDEZVOUS` (a file path every rank can read: on several nodes, a shared file
/// system; rank 0 creates it, so it must not exist before the launch).
///
/// ```
/// use masam_dist::DistEnv;
/// let vars = [("RANK", "1"), ("WORLD_SIZE", "4"), ("MASAM_RENDEZVOUS", "/shared/run/nccl.id")];
/// let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
/// let env = DistEnv::from_lookup(get).unwrap().unwrap();
/// assert_eq!((env.rank, env.world_size, env.local_rank), (1, 4, 1));
/// assert!(DistEnv::from_lookup(|_| None).unwrap().is_none()); // not a launch: one process
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks over all nodes.
    pub world_size: usize,
    /// CUDA device index of this rank on its node.
    pub local_rank: usize,
    /// The rendezvous file; required with NCCL when `world_size > 1`.
    pub rendezvous: Option<PathBuf>,
}

fn parse(name: &'static str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|_| DistError::Env {
        name,
        reason: format!("`{value}` is not a non-negative integer"),
    })
}

impl DistEnv {
    /// The contract read from the process environment; `None` when `WORLD_SIZE` is unset.
    ///
    /// # Errors
    /// [`DistError::Env`] when a variable is malformed, `RANK` is missing or not below
    /// `WORLD_SIZE`.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) over any variable lookup (tests, launchers).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get(WORLD_SIZE) else {
            return Ok(None);
        };
        let world_size = parse(WORLD_SIZE, &world)?;
        if world_size == 0 {
            return Err(DistError::Env {
                name: WORLD_SIZE,
                reason: "must be at least 1".into(),
            });
        }
        let rank = match get(RANK) {
            Some(r) => parse(RANK, &r)?,
            None => {
                return Err(DistError::Env {
                    name: RANK,
                    reason: format!("unset while {WORLD_SIZE} is set"),
                })
            }
        };
        if rank >= world_size {
            return Err(DistError::Env {
                name: RANK,
                reason: format!("{rank} is not below {WORLD_SIZE}={world_size}"),
            });
        }
        let local_rank = match get(LOCAL_RANK) {
            Some(r) => parse(LOCAL_RANK, &r)?,
            None => rank,
        };
        let rendezvous = get(MASAM_RENDEZVOUS)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            rendezvous,
        }))
    }

    /// The variables that describe this rank to a child process (what a launcher sets).
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (RANK, self.rank.to_string()),
            (WORLD_SIZE, self.world_size.to_string()),
            (LOCAL_RANK, self.local_rank.to_string()),
        ];
        if let Some(p) = &self.rendezvous {
            v.push((MASAM_RENDEZVOUS, p.display().to_string()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let owned: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_lookup(move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn round_trips_through_the_variables() {
        let e = DistEnv {
            rank: 2,
            world_size: 3,
            local_rank: 0,
            rendezvous: Some("/tmp/x.id".into()),
        };
        let vars: Vec<(&str, String)> = e.to_vars();
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(lookup(&pairs).unwrap(), Some(e));
    }

    #[test]
    fn malformed_contracts_are_errors() {
        for bad in [
            &[("WORLD_SIZE", "2")][..],
            &[("WORLD_SIZE", "2"), ("RANK", "2")],
            &[("WORLD_SIZE", "0"), ("RANK", "0")],
            &[("WORLD_SIZE", "two"), ("RANK", "0")],
            &[("WORLD_SIZE", "2"), ("RANK", "-1")],
            &[("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "x")],
        ] {
            assert!(matches!(lookup(bad), Err(DistError::Env { .. })), "{bad:?}");
        }
    }
}
