//! Ranks as threads of one process, sharing host buffers: the CPU communicator.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use candle_core::{DType, Tensor};

use crate::{Communicator, DistError, Result};

/// Creates the communicators of a group of ranks that run as threads of one process.
///
/// Buffers go through host memory in f64: a sum is computed once, in rank order, by the last
/// rank to arrive, and every rank reads that one result, so all ranks get bit-identical values
/// whatever the arrival order. When a rank's [`ThreadComm`] is dropped (the thread returned
/// early, with an error or a panic), the group is aborted: the other ranks' pending and later
/// collectives fail with [`DistError::Aborted`] instead of waiting for ever.
#[derive(Debug, Clone, Copy)]
pub struct ThreadGroup;

impl ThreadGroup {
    /// One communicator per rank, `0..world_size`, to be moved into the ranks' threads.
    ///
    /// # Errors
    /// [`DistError::EmptyWorld`] when `world_size` is 0.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(world_size: usize) -> Result<Vec<ThreadComm>> {
        if world_size == 0 {
            return Err(DistError::EmptyWorld);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                arrived: 0,
                slots: (0..world_size).map(|_| None).collect(),
                result: None,
                aborted: None,
            }),
            wake: Condvar::new(),
        });
        Ok((0..world_size)
            .map(|rank| ThreadComm {
                rank,
                world_size,
                shared: shared.clone(),
            })
            .collect())
    }
}

/// One rank of a [`ThreadGroup`].
#[derive(Debug)]
pub struct ThreadComm {
    rank: usize,
    world_size: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    /// Number of completed collectives.
    generation: u64,
    /// Ranks that have joined the current collective.
    arrived: usize,
    /// Their contributions, by rank.
    slots: Vec<Option<Contribution>>,
    /// The outcome of the last completed collective.
    result: Option<Arc<std::result::Result<Vec<f64>, String>>>,
    /// Why the group can no longer complete a collective.
    aborted: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Broadcast(usize),
    Barrier,
}

#[derive(Debug)]
struct Contribution {
    op: Op,
    data: Vec<f64>,
}

/// The result of a collective from every rank's contribution, or why they disagree.
fn combine(slots: Vec<Contribution>) -> std::result::Result<Vec<f64>, String> {
    let first = slots.first().ok_or("no rank joined")?;
    for (r, s) in slots.iter().enumerate() {
        if s.op != first.op {
            return Err(format!(
                "rank {r} called {:?} while rank 0 called {:?}",
                s.op, first.op
            ));
        }
        if s.data.len() != first.data.len() {
            return Err(format!(
                "rank {r} sent {} elements, rank 0 sent {}",
                s.data.len(),
                first.data.len()
            ));
        }
    }
    Ok(match first.op {
        Op::Barrier => vec![],
        Op::Broadcast(root) => slots
            .into_iter()
            .nth(root)
            .map(|s| s.data)
            .ok_or("broadcast root outside the group")?,
        Op::Sum => {
            let mut it = slots.into_iter();
            let mut acc = it.next().map(|s| s.data).unwrap_or_default();
            for s in it {
                for (a, b) in acc.iter_mut().zip(&s.data) {
                    *a += b;
                }
            }
            acc
        }
    })
}

impl ThreadComm {
    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.shared
            .state
            .lock()
            .map_err(|_| DistError::Aborted("a rank panicked inside a collective".into()))
    }

    /// Joins a collective with `data`; returns the combined result once every rank has joined.
    fn collective(
        &self,
        op: Op,
        data: Vec<f64>,
    ) -> Result<Arc<std::result::Result<Vec<f64>, String>>> {
        let mut st = self.lock()?;
        if let Some(why) = &st.aborted {
            return Err(DistError::Aborted(why.clone()));
        }
        let generation = st.generation;
        st.slots[self.rank] = Some(Contribution { op, data });
        st.arrived += 1;
        if st.arrived == self.world_size {
            let slots: Option<Vec<Contribution>> = st.slots.iter_mut().map(Option::take).collect();
            st.arrived = 0;
            let outcome = match slots {
                Some(s) => combine(s),
                None => Err("a rank's contribution went missing".into()),
            };
            if let Err(why) = &outcome {
                st.aborted = Some(why.clone());
            }
            st.result = Some(Arc::new(outcome));
            st.generation += 1;
            self.shared.wake.notify_all();
        } else {
            while st.generation == generation {
                if let Some(why) = &st.aborted {
                    return Err(DistError::Aborted(why.clone()));
                }
                st = self.shared.wake.wait(st).map_err(|_| {
                    DistError::Aborted("a rank panicked inside a collective".into())
                })?;
            }
        }
        // the next collective cannot complete before this rank joins it, so `result` is still ours
        st.result
            .clone()
            .ok_or_else(|| DistError::Aborted("no result".into()))
    }

    /// A collective over a tensor: to host f64, combine, back to the tensor's dtype and device.
    fn tensor_collective(&self, op: Op, buffer: &Tensor) -> Result<Tensor> {
        let dtype = buffer.dtype();
        if !matches!(dtype, DType::F32 | DType::F64 | DType::BF16 | DType::F16) {
            return Err(DistError::UnsupportedDType(dtype));
        }
        let host = buffer
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let out = self.collective(op, host)?;
        let data = match &*out {
            Ok(d) => d.clone(),
            Err(why) => return Err(DistError::Mismatch(why.clone())),
        };
        Ok(Tensor::from_vec(data, buffer.shape(), buffer.device())?.to_dtype(dtype)?)
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, buffer: &Tensor) -> Result<Tensor> {
        self.tensor_collective(Op::Sum, buffer)
    }

    fn broadcast(&self, buffer: &Tensor, root: usize) -> Result<Tensor> {
        if root >= self.world_size {
            return Err(DistError::BadRank {
                rank: root,
                world_size: self.world_size,
            });
        }
        self.tensor_collective(Op::Broadcast(root), buffer)
    }

    fn barrier(&self) -> Result<()> {
        match &*self.collective(Op::Barrier, vec![])? {
            Ok(_) => Ok(()),
            Err(why) => Err(DistError::Mismatch(why.clone())),
        }
    }
}

impl Drop for ThreadComm {
    fn drop(&mut self) {
        // a rank that leaves can join no further collective: wake the others with an error
        if let Ok(mut st) = self.shared.state.lock() {
            if st.aborted.is_none() {
                st.aborted = Some(format!("rank {} left the group", self.rank));
            }
        }
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn on_ranks<T: Send + 'static>(
        world: usize,
        f: impl Fn(ThreadComm) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let f = Arc::new(f);
        let hs: Vec<_> = ThreadGroup::new(world)
            .unwrap()
            .into_iter()
            .map(|c| {
                let f = f.clone();
                std::thread::spawn(move || f(c))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn sum_and_broadcast_agree_on_every_rank() {
        let out = on_ranks(3, |c| {
            let r = c.rank() as f32;
            let t = Tensor::new(&[r, 10. * r], &Device::Cpu).unwrap();
            let mut seen = vec![];
            for _ in 0..20 {
                seen.push(c.all_reduce_sum(&t).unwrap().to_vec1::<f32>().unwrap());
                seen.push(c.broadcast(&t, 2).unwrap().to_vec1::<f32>().unwrap());
                c.barrier().unwrap();
            }
            seen
        });
        for per_rank in out {
            for pair in per_rank.chunks(2) {
                assert_eq!(pair[0], vec![3., 30.]);
                assert_eq!(pair[1], vec![2., 20.]);
            }
        }
    }

    #[test]
    fn a_rank_that_leaves_aborts_the_others() {
        let out = on_ranks(2, |c| {
            if c.rank() == 1 {
                return None; // drops its communicator without joining
            }
            let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
            Some(c.all_reduce_sum(&t).map(|_| ()))
        });
        assert!(matches!(out[0], Some(Err(DistError::Aborted(_)))));
    }

    #[test]
    fn mismatched_sizes_are_an_error_on_every_rank() {
        let out = on_ranks(2, |c| {
            let t = Tensor::zeros(c.rank() + 1, DType::F32, &Device::Cpu).unwrap();
            c.all_reduce_sum(&t).map(|_| ())
        });
        for r in out {
            assert!(matches!(r, Err(DistError::Mismatch(_))), "{r:?}");
        }
    }

    #[test]
    fn empty_world_and_bad_root_are_refused() {
        assert!(matches!(ThreadGroup::new(0), Err(DistError::EmptyWorld)));
        let c = ThreadGroup::new(1).unwrap().pop().unwrap();
        let t = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(c.broadcast(&t, 1), Err(DistError::BadRank { .. })));
        assert!(matches!(
            c.all_reduce_sum(&t.to_dtype(DType::U8).unwrap()),
            Err(DistError::UnsupportedDType(DType::U8))
        ));
    }
}
