//! Data-parallel training for masam.
//!
//! Every rank (one process per GPU, or one thread per rank on the CPU) holds a full model,
//! trains on its own share of the global batch, and averages the gradients of the trainable
//! parameters with the others before each optimiser step, so that every rank takes the same
//! step. This crate provides the pieces:
//!
//! - [`Communicator`]: rank, world size, sum all-reduce and broadcast of one flat bucket,
//!   barrier. Implementations: [`SingleProcess`] (world of one, no communication),
//!   [`ThreadGroup`] (ranks as threads of one process sharing host buffers; CPU, used by the
//!   tests and by `masam finetune --ranks N`), and `NcclCommunicator` (feature `nccl`, one
//!   process per GPU through cudarc's NCCL bindings).
//! - [`buckets`]: gradients flattened into buckets of a bounded size (25 MB by default) and
//!   all-reduced bucket by bucket, then split back.
//! - [`DistEnv`] and [`rendezvous`]: the environment contract of a launch (`RANK`,
//!   `WORLD_SIZE`, `LOCAL_RANK`, `MASAM_RENDEZVOUS`) and the shared file through which rank 0
//!   hands NCCL's unique id to the other ranks.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use masam_dist::{buckets, Communicator, ThreadGroup};
//!
//! let comms = ThreadGroup::new(2).unwrap();
//! let handles: Vec<_> = comms
//!     .into_iter()
//!     .map(|c| {
//!         std::thread::spawn(move || {
//!             let g = Tensor::full(c.rank() as f32 + 1.0, 3, &Device::Cpu).unwrap();
//!             let mean = buckets::all_reduce_mean(&c, &[g], buckets::DEFAULT_BUCKET_BYTES).unwrap();
//!             mean[0].to_vec1::<f32>().unwrap()
//!         })
//!     })
//!     .collect();
//! for h in handles {
//!     assert_eq!(h.join().unwrap(), vec![1.5; 3]); // (1 + 2) / 2 on both ranks
//! }
//! ```

pub mod buckets;
mod communicator;
mod dist_env;
mod error;
#[cfg(feature = "nccl")]
mod nccl;
pub mod rendezvous;
mod single_process;
mod thread_group;

pub use communicator::Communicator;
pub use dist_env::DistEnv;
pub use error::{DistError, Result};
#[cfg(feature = "nccl")]
pub use nccl::NcclCommunicator;
pub use single_process::SingleProcess;
pub use thread_group::{ThreadComm, ThreadGroup};
