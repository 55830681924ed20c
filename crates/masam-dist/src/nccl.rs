//! One process per GPU: collectives through NCCL (cudarc's bindings), on candle's own CUDA
//! stream, so they are ordered with the kernels that produce and consume the buffers.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::{rendezvous, Communicator, DistEnv, DistError, Result};

/// Size of NCCL's unique id.
pub const NCCL_ID_BYTES: usize = 128;

/// How long a rank waits for rank 0's rendezvous file.
pub const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(600);

/// An NCCL communicator with exclusive access: NCCL calls on one communicator must not overlap.
struct SendComm(Comm);

// SAFETY: an NCCL communicator is a handle that may be used from any thread provided calls on
// it do not run concurrently; every use goes through the `Mutex` of `NcclCommunicator`.
unsafe impl Send for SendComm {}

/// A rank of a data-parallel group over NCCL, one process per GPU.
///
/// Built with [`NcclCommunicator::from_env`] from the launch contract ([`DistEnv`]): rank 0
/// creates NCCL's unique id and publishes it in the rendezvous file; every rank then joins.
pub struct NcclCommunicator {
    comm: Mutex<SendComm>,
    rank: usize,
    world_size: usize,
    device: Device,
}

impl std::fmt::Debug for NcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCommunicator")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish()
    }
}

fn nccl_err(e: impl std::fmt::Debug) -> DistError {
    DistError::Nccl(format!("{e:?}"))
}

impl NcclCommunicator {
    /// A fresh NCCL unique id (rank 0 creates it; the others receive it).
    pub fn unique_id() -> Result<[u8; NCCL_ID_BYTES]> {
        let id = Id::new().map_err(nccl_err)?;
        Ok(id.internal().map(|c| c as u8))
    }

    /// Joins the group `id` as `rank` of `world_size` on `device` (a CUDA device). Blocks until
    /// every rank has joined.
    pub fn new(
        device: &Device,
        rank: usize,
        world_size: usize,
        id: &[u8; NCCL_ID_BYTES],
    ) -> Result<Self> {
        if rank >= world_size {
            return Err(DistError::BadRank { rank, world_size });
        }
        let stream = device.as_cuda_device()?.cuda_stream();
        let id = Id::uninit(id.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(stream, rank, world_size, id).map_err(nccl_err)?;
        Ok(Self {
            comm: Mutex::new(SendComm(comm)),
            rank,
            world_size,
            device: device.clone(),
        })
    }

    /// The rank described by `env` on CUDA device `env.local_rank`: rank 0 publishes a fresh
    /// id in `env.rendezvous`, the others wait for it (at most [`RENDEZVOUS_TIMEOUT`]). A world
    /// of one needs no rendezvous file.
    pub fn from_env(env: &DistEnv) -> Result<Self> {
        let device = Device::new_cuda(env.local_rank)?;
        let id = if env.world_size == 1 {
            Self::unique_id()?
        } else {
            let path = env.rendezvous.as_deref().ok_or(DistError::Env {
                name: crate::dist_env::MASAM_RENDEZVOUS,
                reason: "unset: NCCL needs a file through which rank 0 shares its id".into(),
            })?;
            Self::exchange_id(path, env.rank)?
        };
        Self::new(&device, env.rank, env.world_size, &id)
    }

    fn exchange_id(path: &Path, rank: usize) -> Result<[u8; NCCL_ID_BYTES]> {
        if rank == 0 {
            let id = Self::unique_id()?;
            rendezvous::publish(path, &id)?;
            return Ok(id);
        }
        let bytes = rendezvous::wait_for(path, NCCL_ID_BYTES, RENDEZVOUS_TIMEOUT)?;
        let mut id = [0u8; NCCL_ID_BYTES];
        id.copy_from_slice(&bytes);
        Ok(id)
    }

    /// The CUDA device of this rank.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn lock(&self) -> Result<MutexGuard<'_, SendComm>> {
        self.comm
            .lock()
            .map_err(|_| DistError::Aborted("a thread panicked inside an NCCL call".into()))
    }

    fn run(&self, buffer: &Tensor, op: Collective) -> Result<Tensor> {
        let dtype = buffer.dtype();
        if !matches!(dtype, DType::F32 | DType::F64 | DType::BF16 | DType::F16) {
            return Err(DistError::UnsupportedDType(dtype));
        }
        if !buffer.device().is_cuda() {
            return Err(DistError::Nccl(
                "NCCL buffers must be on a CUDA device".into(),
            ));
        }
        let guard = self.lock()?;
        let out = buffer
            .contiguous()?
            .apply_op1_no_bwd(&NcclOp { comm: &guard.0, op })?;
        Ok(out)
    }
}

#[derive(Clone, Copy)]
enum Collective {
    Sum,
    Broadcast(usize),
}

/// A collective as a candle op: a new buffer on the device, filled by NCCL.
struct NcclOp<'a> {
    comm: &'a Comm,
    op: Collective,
}

impl CustomOp1 for NcclOp<'_> {
    fn name(&self) -> &'static str {
        "nccl-collective"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL collectives need CUDA buffers")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("NCCL collective on a non-contiguous buffer")
        };
        let n = end - start;
        let dev = s.device.clone();
        macro_rules! collective {
            ($t:ty) => {{
                let src = s.as_cuda_slice::<$t>()?.slice(start..end);
                let mut dst = dev.alloc_zeros::<$t>(n)?;
                match self.op {
                    Collective::Sum => self.comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
                    Collective::Broadcast(root) => {
                        self.comm.broadcast(Some(&src), &mut dst, root as i32)
                    }
                }
                .map_err(|e| candle_core::Error::Msg(format!("NCCL: {e:?}")))?;
                CudaStorage::wrap_cuda_slice(dst, dev)
            }};
        }
        let out = match s.dtype() {
            DType::F32 => collective!(f32),
            DType::F64 => collective!(f64),
            DType::BF16 => collective!(half::bf16),
            DType::F16 => collective!(half::f16),
            d => candle_core::bail!("no NCCL collective for {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor> {
        self.run(buffer, Collective::Sum)
    }

    fn broadcast(&self, buffer: &Tensor, root: usize) -> Result<Tensor> {
        if root >= self.world_size {
            return Err(DistError::BadRank {
                rank: root,
                world_size: self.world_size,
            });
        }
        self.run(buffer, Collective::Broadcast(root))
    }

    fn barrier(&self) -> Result<()> {
        let one = Tensor::ones(1, DType::F32, &self.device)?;
        self.all_reduce_sum(&one)?;
        self.device.synchronize()?;
        Ok(())
    }
}
