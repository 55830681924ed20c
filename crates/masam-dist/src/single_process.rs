//! A world of one rank: every collective returns its input.

use candle_core::Tensor;

use crate::{Communicator, Result};

/// The communicator of an ordinary, one-process run (rank 0 of 1): nothing is sent, every
/// collective returns its input unchanged.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use masam_dist::{Communicator, SingleProcess};
/// let t = Tensor::new(&[1f32, 2.], &Device::Cpu).unwrap();
/// let c = SingleProcess;
/// assert_eq!(c.all_reduce_sum(&t).unwrap().to_vec1::<f32>().unwrap(), vec![1., 2.]);
/// assert!(c.is_root());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor> {
        Ok(buffer.clone())
    }

    fn broadcast(&self, buffer: &Tensor, root: usize) -> Result<Tensor> {
        if root != 0 {
            return Err(crate::DistError::BadRank {
                rank: root,
                world_size: 1,
            });
        }
        Ok(buffer.clone())
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}
