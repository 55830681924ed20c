//! Many tensors through few collectives: flatten into buckets of bounded size, reduce or
//! broadcast each bucket, split back.
//!
//! Consecutive tensors of the same dtype and device share a bucket until it would exceed the
//! byte limit (a tensor larger than the limit gets a bucket of its own). Every rank must pass
//! tensors of the same shapes in the same order; the buckets then match across ranks.

use candle_core::Tensor;

use crate::{Communicator, Result};

/// The default bucket size, 25 MB (PyTorch DDP's default).
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The buckets of `tensors`: ranges of indices, each with at most `bucket_bytes` bytes unless
/// it holds a single larger tensor.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let t = |n: usize| Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
/// let plan = masam_dist::buckets::plan(&[t(2), t(2), t(8), t(1)], 16);
/// assert_eq!(plan, vec![0..2, 2..3, 3..4]); // 16 B, 32 B alone, 4 B
/// ```
pub fn plan(tensors: &[Tensor], bucket_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = vec![];
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let b = t.elem_count() * t.dtype().size_in_bytes();
        let same_kind = i == start
            || (t.dtype() == tensors[start].dtype()
                && t.device().same_device(tensors[start].device()));
        if i > start && (!same_kind || bytes + b > bucket_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

/// Applies `collective` to each bucket of `tensors` flattened, and returns the tensors cut
/// back out of the results, with their shapes.
fn bucketed(
    tensors: &[Tensor],
    bucket_bytes: usize,
    mut collective: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(tensors.len());
    for range in plan(tensors, bucket_bytes) {
        let part = &tensors[range];
        let flat: Vec<Tensor> = part
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<_>>()?;
        let bucket = Tensor::cat(&flat, 0)?;
        let reduced = collective(&bucket)?;
        let mut offset = 0;
        for t in part {
            let n = t.elem_count();
            out.push(reduced.narrow(0, offset, n)?.reshape(t.shape())?);
            offset += n;
        }
    }
    Ok(out)
}

/// The element-wise sum over ranks of each tensor.
pub fn all_reduce_sum(
    comm: &dyn Communicator,
    tensors: &[Tensor],
    bucket_bytes: usize,
) -> Result<Vec<Tensor>> {
    if comm.world_size() == 1 {
        return Ok(tensors.to_vec());
    }
    bucketed(tensors, bucket_bytes, |b| comm.all_reduce_sum(b))
}

/// The element-wise mean over ranks of each tensor (the data-parallel gradient).
pub fn all_reduce_mean(
    comm: &dyn Communicator,
    tensors: &[Tensor],
    bucket_bytes: usize,
) -> Result<Vec<Tensor>> {
    let w = comm.world_size();
    if w == 1 {
        return Ok(tensors.to_vec());
    }
    bucketed(tensors, bucket_bytes, |b| {
        Ok(comm.all_reduce_sum(b)?.affine(1.0 / w as f64, 0.0)?)
    })
}

/// Rank `root`'s tensors on every rank (initial weights, a resumed state).
pub fn broadcast(
    comm: &dyn Communicator,
    tensors: &[Tensor],
    root: usize,
    bucket_bytes: usize,
) -> Result<Vec<Tensor>> {
    if comm.world_size() == 1 {
        return Ok(tensors.to_vec());
    }
    bucketed(tensors, bucket_bytes, |b| comm.broadcast(b, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThreadGroup;
    use candle_core::{DType, Device};

    #[test]
    fn shapes_survive_and_means_are_exact_across_bucket_sizes() {
        for bucket_bytes in [4, 20, 1 << 20] {
            let hs: Vec<_> = ThreadGroup::new(2)
                .unwrap()
                .into_iter()
                .map(|c| {
                    std::thread::spawn(move || {
                        let r = c.rank() as f32;
                        let ts = vec![
                            Tensor::full(r, (2, 3), &Device::Cpu).unwrap(),
                            Tensor::full(2. * r, 4, &Device::Cpu).unwrap(),
                            Tensor::full(r, (1, 1, 2), &Device::Cpu)
                                .unwrap()
                                .to_dtype(DType::F64)
                                .unwrap(),
                        ];
                        let m = all_reduce_mean(&c, &ts, bucket_bytes).unwrap();
                        let b = broadcast(&c, &ts, 1, bucket_bytes).unwrap();
                        (m, b)
                    })
                })
                .collect();
            for h in hs {
                let (m, b) = h.join().unwrap();
                assert_eq!(m[0].dims(), &[2, 3]);
                assert_eq!(m[2].dtype(), DType::F64);
                assert_eq!(
                    m[0].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    vec![0.5; 6]
                );
                assert_eq!(m[1].to_vec1::<f32>().unwrap(), vec![1.0; 4]);
                assert_eq!(
                    m[2].flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                    vec![0.5; 2]
                );
                assert_eq!(b[1].to_vec1::<f32>().unwrap(), vec![2.0; 4]);
            }
        }
    }

    #[test]
    fn plan_splits_on_dtype_and_size() {
        let f = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let d = Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap();
        assert_eq!(
            plan(&[f.clone(), d.clone(), f.clone()], 1 << 20),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(plan(&[f.clone(), f.clone(), f], 32), vec![0..2, 2..3]);
        assert!(plan(&[], 8).is_empty());
    }
}
