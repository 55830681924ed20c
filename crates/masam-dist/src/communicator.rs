//! The communicator trait: what data-parallel training needs from the ranks' transport.

use candle_core::Tensor;

use crate::Result;

/// Collective operations among the `world_size` ranks of one training run.
///
/// Every rank must call the same collectives in the same order with buffers of the same
/// size and dtype (as with MPI or NCCL). A collective returns only when every rank has
/// joined it; an implementation reports [`crate::DistError::Aborted`] rather than waiting for
/// ever when it can tell that a rank has gone.
///
/// Buffers are tensors of any shape on the rank's device; results have the buffer's shape,
/// dtype and device. [`crate::buckets`] flattens many tensors into few buffers.
pub trait Communicator: Send + Sync {
    /// This rank, in `0..world_size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn world_size(&self) -> usize;

    /// The element-wise sum of every rank's `buffer`, the same on every rank (bit for bit).
    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor>;

    /// Rank `root`'s `buffer`, on every rank (the others' buffers give only shape and dtype).
    fn broadcast(&self, buffer: &Tensor, root: usize) -> Result<Tensor>;

    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// True on rank 0, the rank that writes checkpoints and logs.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}
